"""Self-test of iam_policy.py and ec2_authz.py, run by moto_launcher_selftest.py (`--self-test`):
the evaluator on its own (each operator, Null, IfExists, the set qualifiers, explicit deny, unknown
operators), then the launcher's `/policy` on real EC2 calls.
"""

import json

import boto3
from botocore.exceptions import ClientError

import iam_policy

REGION = "eu-west-1"
ACCOUNT = "123456789012"
AMI = "ami-03cf127a"  # moto's Windows AMI the launcher's self-test uses


def allow(action, resource="*", condition=None, effect="Allow"):
    statement = {"Effect": effect, "Action": action, "Resource": resource}
    if condition:
        statement["Condition"] = condition
    return statement


def decide(statements, action, resource="*", context=None):
    return iam_policy.decide({"Version": "2012-10-17", "Statement": statements}, action, resource, context or {})


def holds(condition, context):
    """Whether an Allow with only `condition` allows a request with `context`."""
    return decide([allow("ec2:RunInstances", condition=condition)], "ec2:RunInstances", "*", context) == "allow"


def check_statements():
    instance = f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-1"
    assert decide([allow("ec2:TerminateInstances")], "ec2:TerminateInstances") == "allow"
    assert decide([], "ec2:TerminateInstances") == "implicit_deny"
    assert decide([allow("ec2:*")], "EC2:terminateinstances") == "allow", "actions are case-insensitive"
    assert decide([allow("ec2:Describe*")], "ec2:TerminateInstances") == "implicit_deny"
    assert decide([allow("ec2:Get?onsoleOutput")], "ec2:GetConsoleOutput") == "allow"
    both = [allow("ec2:*"), allow("ec2:TerminateInstances", effect="Deny")]
    assert decide(both, "ec2:TerminateInstances", instance) == "explicit_deny", "an explicit deny wins"
    assert decide(both, "ec2:RebootInstances", instance) == "allow"
    not_terminate = [{"Effect": "Allow", "NotAction": "ec2:Terminate*", "Resource": "*"}]
    assert decide(not_terminate, "ec2:RebootInstances") == "allow"
    assert decide(not_terminate, "ec2:TerminateInstances") == "implicit_deny"
    scoped = [allow("ec2:TerminateInstances", f"arn:aws:ec2:{REGION}:*:instance/*")]
    assert decide(scoped, "ec2:TerminateInstances", instance) == "allow"
    assert decide(scoped, "ec2:TerminateInstances", instance.replace("instance/", "volume/")) == "implicit_deny"
    assert decide(scoped, "ec2:TerminateInstances", instance.replace(REGION, "us-east-1")) == "implicit_deny"
    upper = [allow("ec2:TerminateInstances", f"arn:aws:ec2:{REGION}:*:Instance/*")]
    assert decide(upper, "ec2:TerminateInstances", instance) == "implicit_deny", "ARNs are case-sensitive"
    image = [allow("ec2:RunInstances", f"arn:aws:ec2:{REGION}::image/*")]
    assert decide(image, "ec2:RunInstances", f"arn:aws:ec2:{REGION}::image/ami-1") == "allow"
    assert decide(image, "ec2:RunInstances", f"arn:aws:ec2:{REGION}:{ACCOUNT}:image/ami-1") == "implicit_deny"
    not_resource = [{"Effect": "Allow", "Action": "ec2:*", "NotResource": f"arn:aws:ec2:*:*:volume/*"}]
    assert decide(not_resource, "ec2:RunInstances", instance) == "allow"
    assert decide(not_resource, "ec2:RunInstances", instance.replace("instance/", "volume/")) == "implicit_deny"


def check_operators():
    tag = "aws:RequestTag/amiprobe:run-id"
    run = {tag: ["r-1"]}
    assert holds({"StringEquals": {tag: "r-1"}}, run) and not holds({"StringEquals": {tag: "R-1"}}, run)
    assert holds({"StringEquals": {tag: ["x", "r-1"]}}, run), "values of a key are OR'ed"
    assert not holds({"StringEquals": {tag: "r-1", "aws:RequestedRegion": REGION}}, run), "keys are AND'ed"
    in_region = dict(run, **{"aws:RequestedRegion": [REGION]})
    assert holds({"StringEquals": {tag: "r-1"}, "StringLike": {"aws:RequestedRegion": "eu-*"}}, in_region)
    assert holds({"StringEquals": {"AWS:REQUESTTAG/AMIPROBE:RUN-ID": "r-1"}}, run), "key names are case-insensitive"
    assert holds({"StringNotEquals": {tag: "x"}}, run) and not holds({"StringNotEquals": {tag: ["x", "r-1"]}}, run)
    assert holds({"StringNotEquals": {tag: "x"}}, {}), "a negated operator on an absent key holds"
    assert not holds({"StringEquals": {tag: "r-1"}}, {}), "an absent key matches nothing"
    assert holds({"StringEqualsIgnoreCase": {tag: "R-1"}}, run)
    assert not holds({"StringNotEqualsIgnoreCase": {tag: "R-1"}}, run)
    assert holds({"StringLike": {tag: "r-?"}}, run) and holds({"StringLike": {tag: "*"}}, run)
    assert not holds({"StringLike": {tag: "R-*"}}, run), "StringLike is case-sensitive"
    assert holds({"StringNotLike": {tag: "x*"}}, run) and not holds({"StringNotLike": {tag: "r*"}}, run)
    assert holds({"Null": {tag: "false"}}, run) and not holds({"Null": {tag: "true"}}, run)
    assert holds({"Null": {tag: "true"}}, {}) and not holds({"Null": {tag: "false"}}, {})
    assert holds({"Null": {tag: False}}, run), "a JSON boolean reads as its string"
    assert holds({"Bool": {"aws:SecureTransport": "true"}}, {"aws:SecureTransport": ["true"]})
    assert not holds({"Bool": {"aws:SecureTransport": "true"}}, {"aws:SecureTransport": ["false"]})
    assert holds({"StringEqualsIfExists": {tag: "r-1"}}, {}), "IfExists holds for an absent key"
    assert not holds({"StringEqualsIfExists": {tag: "x"}}, run), "IfExists compares a present one"
    role = "iam:PassedToService"
    source = {"aws:SourceArn": [f"arn:aws:iam::{ACCOUNT}:role/probe"]}
    assert holds({"ArnLike": {"aws:SourceArn": "arn:aws:iam::*:role/p*"}}, source)
    assert holds({"ArnEquals": {"aws:SourceArn": f"arn:aws:iam::{ACCOUNT}:role/probe"}}, source)
    assert not holds({"ArnLike": {"aws:SourceArn": "arn:aws:iam::*:role/P*"}}, source), "ARNs are case-sensitive"
    crossing = {"aws:SourceArn": ["arn:aws:iam::1:x:role/probe"]}
    assert not holds({"ArnLike": {"aws:SourceArn": "arn:aws:iam::*:role*probe"}}, crossing), "* crossed a colon"
    assert holds({"StringEquals": {role: "ec2.amazonaws.com"}}, {role: ["ec2.amazonaws.com"]})
    keys = {"aws:TagKeys": ["amiprobe:run-id", "Name"]}
    assert holds({"ForAllValues:StringLike": {"aws:TagKeys": ["amiprobe:*", "Name"]}}, keys)
    assert not holds({"ForAllValues:StringLike": {"aws:TagKeys": ["amiprobe:*"]}}, keys)
    assert holds({"ForAllValues:StringEquals": {"aws:TagKeys": ["x"]}}, {}), "ForAllValues holds with no values"
    assert holds({"ForAnyValue:StringEquals": {"aws:TagKeys": ["Name"]}}, keys)
    assert not holds({"ForAnyValue:StringEquals": {"aws:TagKeys": ["Name"]}}, {})
    # Unknown operators fail closed: no Allow through them, and a Deny through them applies.
    assert not holds({"NumericLessThan": {"ec2:VolumeSize": "100"}}, {"ec2:VolumeSize": ["8"]})
    assert not holds({"StringEqualz": {tag: "r-1"}}, run)
    assert not holds({"ForAnyValue:Null": {tag: "false"}}, run)
    deny = allow("ec2:*", effect="Deny", condition={"DateLessThan": {"aws:CurrentTime": "2000-01-01"}})
    assert decide([allow("ec2:*"), deny], "ec2:RunInstances") == "explicit_deny"


def check_evaluator():
    check_statements()
    check_operators()


def error_of(call, **kwargs):
    try:
        call(**kwargs)
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["Error"]["Message"]
    raise AssertionError(f"{call.__name__} succeeded")


def refused(m, sts, call, **kwargs):
    """(action, resource) an UnauthorizedOperation's decoded message names."""
    code, message = error_of(call, **kwargs)
    assert code == "UnauthorizedOperation", (code, message)
    encoded = message.split("Encoded authorization failure message: ", 1)[1]
    context = json.loads(sts.decode_authorization_message(EncodedMessage=encoded)["DecodedMessage"])["context"]
    return context["action"], context["resource"]


RUN_TAG = [{"Key": "amiprobe:run-id", "Value": "r"}]


def arns(*kinds):
    return [f"arn:aws:ec2:{REGION}:{'' if k in ('image', 'snapshot') else '*'}:{k}/*" for k in kinds]


def launch_policy(extra=()):
    """A policy in the shape amiprobe prints: tagged creation, existing resources used, tag on create,
    owned instances removed."""
    tagged = {"Null": {"aws:RequestTag/amiprobe:run-id": "false"}}
    owned = {"Null": {"ec2:ResourceTag/amiprobe:run-id": "false"}}
    return {
        "Version": "2012-10-17",
        "Statement": [
            allow("ec2:Describe*", condition={"StringEquals": {"aws:RequestedRegion": REGION}}),
            allow("ec2:RunInstances", arns("instance", "volume"), tagged),
            allow("ec2:RunInstances", arns("image", "snapshot", "subnet", "network-interface", "security-group")),
            allow("ec2:RunInstances", arns("key-pair")),
            allow("ec2:CreateTags", arns("instance", "volume"), {"StringEquals": {"ec2:CreateAction": "RunInstances"}}),
            allow(["ec2:TerminateInstances", "ec2:GetConsoleOutput"], arns("instance"), owned),
            allow("sts:DecodeAuthorizationMessage"),
            *extra,
        ],
    }


def check_policy_hook(m, ec2, sts):
    tags = [{"ResourceType": t, "Tags": RUN_TAG} for t in ("instance", "volume")]
    launch = dict(ImageId=AMI, MinCount=1, MaxCount=1)
    untagged = ec2.run_instances(**launch)["Instances"][0]["InstanceId"]
    m.post("/policy", {"document": launch_policy()})
    # Allowed, DryRun and real; the volumes' tags matter as much as the instance's.
    assert error_of(ec2.run_instances, **launch, TagSpecifications=tags, DryRun=True)[0] == "DryRunOperation"
    launched = ec2.run_instances(**launch, TagSpecifications=tags)["Instances"][0]["InstanceId"]
    action, resource = refused(m, sts, ec2.run_instances, **launch, TagSpecifications=tags[:1])
    assert (action, resource) == ("ec2:RunInstances", f"arn:aws:ec2:{REGION}:{ACCOUNT}:volume/*"), (action, resource)
    # The instance's own tags decide what may be done to it; a made-up id has none.
    assert ec2.get_console_output(InstanceId=launched)["InstanceId"] == launched
    action, resource = refused(m, sts, ec2.terminate_instances, InstanceIds=[untagged])
    assert (action, resource) == ("ec2:TerminateInstances", f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{untagged}")
    action, _ = refused(m, sts, ec2.terminate_instances, InstanceIds=["i-00000000000000000"], DryRun=True)
    assert action == "ec2:TerminateInstances", action
    assert error_of(ec2.terminate_instances, InstanceIds=[launched], DryRun=True)[0] == "DryRunOperation"
    # Tagging an existing instance is not tagging on create.
    assert refused(m, sts, ec2.create_tags, Resources=[launched], Tags=RUN_TAG)[0] == "ec2:CreateTags"
    check_key_pairs_and_roles(m, ec2, sts, launch, tags)
    # The image's snapshot is used too (EBS-backed: its root volume is made from it).
    policy = launch_policy()
    policy["Statement"][2]["Resource"] = arns("image", "subnet", "network-interface", "security-group")
    m.post("/policy", {"document": policy})
    action, resource = refused(m, sts, ec2.run_instances, **launch, TagSpecifications=tags)
    assert (action, resource.split("/")[0]) == ("ec2:RunInstances", f"arn:aws:ec2:{REGION}::snapshot"), resource
    # Without CreateTags on volumes, the tag on create is refused as CreateTags.
    policy = launch_policy()
    policy["Statement"][4]["Resource"] = arns("instance")
    m.post("/policy", {"document": policy})
    action, resource = refused(m, sts, ec2.run_instances, **launch, TagSpecifications=tags)
    assert (action, resource) == ("ec2:CreateTags", f"arn:aws:ec2:{REGION}:{ACCOUNT}:volume/*"), (action, resource)
    # Describe calls: the region condition; STS decoding needs its own action.
    assert ec2.describe_instances()["Reservations"], "describe allowed in the policy's region"
    policy["Statement"].pop()
    m.post("/policy", {"document": policy})
    code, message = error_of(ec2.create_tags, Resources=[launched], Tags=RUN_TAG)
    encoded = message.split("Encoded authorization failure message: ", 1)[1]
    assert error_of(sts.decode_authorization_message, EncodedMessage=encoded)[0] == "AccessDenied"
    m.post("/policy", {"document": None})
    ec2.create_tags(Resources=[launched], Tags=[{"Key": "Name", "Value": "free"}])
    m.post("/policy", {"document": {"Version": "2012-10-17", "Statement": []}})
    assert error_of(ec2.describe_instances)[0] == "UnauthorizedOperation"
    m.post("/reset")
    assert ec2.describe_instances()["Reservations"] == [], "/reset clears the policy with the rest"


def check_key_pairs_and_roles(m, ec2, sts, launch, tags):
    """A key pair is checked by name with its own tags (an explicit deny on it wins), an instance
    profile as iam:PassRole on its role, passed to EC2."""
    oracle = m.client("oracle")
    oracle.create_key_pair(KeyName="probe-key")
    oracle.create_key_pair(KeyName="xkey")
    deny_x = allow("ec2:RunInstances", f"arn:aws:ec2:{REGION}:*:key-pair/x*", effect="Deny")
    m.post("/policy", {"document": launch_policy([deny_x])})
    assert error_of(ec2.run_instances, **launch, TagSpecifications=tags, KeyName="probe-key", DryRun=True)[0] == (
        "DryRunOperation"
    )
    _, resource = refused(m, sts, ec2.run_instances, **launch, TagSpecifications=tags, KeyName="xkey")
    assert resource == f"arn:aws:ec2:{REGION}:{ACCOUNT}:key-pair/xkey", resource
    iam = boto3.client(
        "iam", endpoint_url=sts.meta.endpoint_url, region_name="us-east-1",
        aws_access_key_id="oracle", aws_secret_access_key="testing",
    )
    iam.create_role(RoleName="probe-role", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17"}))
    iam.create_instance_profile(InstanceProfileName="probe")
    iam.add_role_to_instance_profile(InstanceProfileName="probe", RoleName="probe-role")
    profile = {"Name": "probe"}
    action, resource = refused(m, sts, ec2.run_instances, **launch, TagSpecifications=tags, IamInstanceProfile=profile)
    assert (action, resource) == ("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/probe-role"), (action, resource)
    to_lambda = allow("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/probe-role",
                      {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}})
    m.post("/policy", {"document": launch_policy([to_lambda])})
    assert refused(m, sts, ec2.run_instances, **launch, TagSpecifications=tags, IamInstanceProfile=profile)[0] == (
        "iam:PassRole"
    )
    to_ec2 = dict(to_lambda, Condition={"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}})
    m.post("/policy", {"document": launch_policy([to_ec2])})
    code, _ = error_of(ec2.run_instances, **launch, TagSpecifications=tags, IamInstanceProfile=profile, DryRun=True)
    assert code == "DryRunOperation", code
