"""SSM calls under the launcher's /deny and /policy, as IAM decides them (moto's SSM checks nothing).

PutParameter: `ssm:PutParameter` on `arn:aws:ssm:REGION:ACCOUNT:parameter/NAME` (a name's leading `/`
is not in its ARN). Run Command (ssm_run.py calls `authorize`): `ssm:SendCommand` on the document's
ARN and on each instance's, `ssm:GetCommandInvocation`, `ssm:ListCommandInvocations` and
`ssm:DescribeInstanceInformation` on `*`. Each check carries `aws:RequestedRegion`. A refusal is
SSM's `AccessDeniedException` (400, JSON protocol) naming the first refused resource, before
anything is written. Every other SSM call is moto's own.
"""

from moto.core.exceptions import JsonRESTError
from moto.ssm.responses import SimpleSystemManagerResponse

# What `install` hands over: the launcher's STATE and LOCK (its "deny" and "policy"), iam_policy, the
# account id.
CONTEXT = {}


def parameter_arn(region, account, name):
    return f"arn:aws:ssm:{region}:{account}:parameter/{name.lstrip('/')}"


def authorize(region, action, resources, tags=None):
    """Raises AccessDeniedException when /deny names `action` or the /policy document does not allow
    it on every one of `resources` (ARNs). `tags`: {ARN: {key: value}}, the tags of the resources that
    have some (an EC2 instance a command is sent to), as SSM gives them to IAM: `ssm:resourceTag/K`
    and `aws:ResourceTag/K`."""
    state, lock, iam_policy, account = (CONTEXT[k] for k in ("state", "lock", "iam_policy", "account"))
    with lock:
        document, denied = state["policy"], action in state["deny"]
    for resource in resources:
        context = {"aws:RequestedRegion": [region]}
        for key, value in ((tags or {}).get(resource) or {}).items():
            context[f"ssm:resourceTag/{key}"] = [value]
            context[f"aws:ResourceTag/{key}"] = [value]
        if denied or (document is not None and iam_policy.decide(document, action, resource, context) != "allow"):
            raise JsonRESTError(
                "AccessDeniedException",
                f"User: arn:aws:iam::{account}:user/amiprobe-test is not authorized to perform: {action} "
                f"on resource: {resource}",
            )


def install(state, lock, iam_policy, account):
    """Wraps moto's PutParameter: refused when /deny names `ssm:PutParameter` or the /policy document
    does not allow it on the parameter."""
    CONTEXT.update(state=state, lock=lock, iam_policy=iam_policy, account=account)
    original = SimpleSystemManagerResponse.put_parameter

    def put_parameter(self):
        name = self._get_param("Name") or ""
        authorize(self.region, "ssm:PutParameter", [parameter_arn(self.region, account, name)])
        return original(self)

    SimpleSystemManagerResponse.put_parameter = put_parameter
