"""SSM PutParameter under the launcher's /deny and /policy, as IAM decides it (moto's SSM checks
nothing): `ssm:PutParameter` on `arn:aws:ssm:REGION:ACCOUNT:parameter/NAME` (a name's leading `/`
is not in its ARN), with `aws:RequestedRegion`. A refusal is SSM's `AccessDeniedException` (400,
JSON protocol), before moto writes anything. Every other SSM call is moto's own.
"""

from moto.core.exceptions import JsonRESTError
from moto.ssm.responses import SimpleSystemManagerResponse


def parameter_arn(region, account, name):
    return f"arn:aws:ssm:{region}:{account}:parameter/{name.lstrip('/')}"


def install(state, lock, iam_policy, account):
    """Wraps moto's PutParameter: refused when /deny names `ssm:PutParameter` or the /policy document
    does not allow it on the parameter."""
    original = SimpleSystemManagerResponse.put_parameter

    def put_parameter(self):
        name = self._get_param("Name") or ""
        with lock:
            document, denied = state["policy"], "ssm:PutParameter" in state["deny"]
        arn = parameter_arn(self.region, account, name)
        context = {"aws:RequestedRegion": [self.region]}
        if denied or (document is not None and iam_policy.decide(document, "ssm:PutParameter", arn, context) != "allow"):
            raise JsonRESTError(
                "AccessDeniedException",
                f"User: arn:aws:iam::{account}:user/amiprobe-test is not authorized to perform: ssm:PutParameter "
                f"on resource: {arn}",
            )
        return original(self)

    SimpleSystemManagerResponse.put_parameter = put_parameter
