"""How EC2 authorizes a call: the (IAM action, resource ARN, request context) checks a request becomes,
all of which must be allowed, after the Service Authorization Reference's "Actions, resources, and
condition keys for Amazon EC2". The moto launcher's `/policy` evaluates them with iam_policy.py.

- RunInstances: `ec2:RunInstances` on the new instance and its volumes (`instance/*`, `volume/*`, each
  with the request's tags for its resource type, TagSpecification.N), the network interface it makes
  (`network-interface/*`), the image (`arn:aws:ec2:R::image/ami-...`, no account) and the snapshot its
  root volume is made from (`arn:aws:ec2:R::snapshot/snap-...`), the subnet (the
  default VPC's default subnet when none is named), each security group (the default VPC's default
  group when none is named), the key pair (`key-pair/NAME`) and the placement group when named, each
  existing resource with its own tags (`ec2:ResourceTag/K`); tag-on-create adds `ec2:CreateTags` on
  each tagged resource type's `TYPE/*` with `ec2:CreateAction=RunInstances`; an instance profile adds
  `iam:PassRole` on each role moto's IAM has in it (a profile moto does not know: the role named like
  it), with `iam:PassedToService=ec2.amazonaws.com`.
- ImportKeyPair / CreateKeyPair: the action on `key-pair/NAME` with the request's tags, plus
  `ec2:CreateTags` with `ec2:CreateAction` when it tags; CreateSecurityGroup likewise on
  `security-group/*`, and on the VPC (`vpc/ID`, the default one when none is named).
- Calls on existing resources (TerminateInstances, RebootInstances, Start/StopInstances,
  GetConsoleOutput, GetConsoleScreenshot, GetPasswordData, DeleteKeyPair, AuthorizeSecurityGroupIngress,
  RevokeSecurityGroupIngress, DeleteSecurityGroup, CreateTags, DeleteTags): the action on each named
  resource's ARN with its current tags from moto's backend (an id moto does not have, as a DryRun's
  made-up one, has none); CreateTags and DeleteTags carry the request's tags as `aws:RequestTag/K`.
- Describe* and any call not named here: the action on `*` (EC2's describe calls take no resource).

Every check carries `aws:RequestedRegion` and `ec2:Region`; tags also give `aws:TagKeys`.
"""

RESOURCE_PREFIXES = {
    "i-": "instance",
    "vol-": "volume",
    "sg-": "security-group",
    "key-": "key-pair",
    "ami-": "image",
    "snap-": "snapshot",
    "subnet-": "subnet",
    "vpc-": "vpc",
    "eni-": "network-interface",
}

# Calls whose named resources are existing instances, and the parameter naming them.
ON_INSTANCES = {
    "TerminateInstances": "InstanceId.",
    "RebootInstances": "InstanceId.",
    "StopInstances": "InstanceId.",
    "StartInstances": "InstanceId.",
    "GetConsoleOutput": "InstanceId",
    "GetConsoleScreenshot": "InstanceId",
    "GetPasswordData": "InstanceId",
}
ON_GROUP = ("AuthorizeSecurityGroupIngress", "RevokeSecurityGroupIngress", "DeleteSecurityGroup")
CREATE_WITH_TAGS = {"ImportKeyPair": "key-pair", "CreateKeyPair": "key-pair", "CreateSecurityGroup": "security-group"}


def values(params, prefix):
    """The values of `prefix` (exactly, or `prefix` + N for a list)."""
    if not prefix.endswith("."):
        return params.get(prefix, [])[:1]
    numbers = sorted(int(k[len(prefix) :]) for k in params if k.startswith(prefix) and k[len(prefix) :].isdigit())
    return [params[f"{prefix}{n}"][0] for n in numbers]


def request_tags(params):
    """{resource type: {key: value}} of a request's TagSpecification.N."""
    out = {}
    n = 1
    while f"TagSpecification.{n}.ResourceType" in params:
        kind = params[f"TagSpecification.{n}.ResourceType"][0]
        tags = out.setdefault(kind, {})
        tags.update(tags_of(params, f"TagSpecification.{n}.Tag."))
        n += 1
    return out


def tags_of(params, prefix):
    """{key: value} of `prefix`N.Key / `prefix`N.Value (`Tag.1.Key`...)."""
    tags = {}
    m = 1
    while f"{prefix}{m}.Key" in params:
        tags[params[f"{prefix}{m}.Key"][0]] = params.get(f"{prefix}{m}.Value", [""])[0]
        m += 1
    return tags


def tag_context(prefix, tags):
    context = {f"{prefix}/{k}": [v] for k, v in tags.items()}
    if prefix == "aws:RequestTag" and tags:
        context["aws:TagKeys"] = list(tags)
    return context


class Authz:
    """The checks of one EC2 call in `region` of `account`, looking up what exists in moto's
    `backend` (its tags, default subnet and group) and IAM (`iam`, for instance profiles' roles)."""

    def __init__(self, backend, iam, region, account):
        self.backend, self.iam, self.region, self.account = backend, iam, region, account
        self.base = {"aws:RequestedRegion": [region], "ec2:Region": [region]}

    def arn(self, kind, name):
        account = "" if kind in ("image", "snapshot") else self.account
        return f"arn:aws:ec2:{self.region}:{account}:{kind}/{name}"

    def tags_of(self, resource_id):
        try:
            return dict(self.backend.tags.get(resource_id) or {})
        except Exception:  # noqa: BLE001 - a backend without tags: the resource has none
            return {}

    def existing(self, action, kind, name, tag_id=None, extra=None):
        context = dict(self.base, **tag_context("ec2:ResourceTag", self.tags_of(tag_id or name)), **(extra or {}))
        return (action, self.arn(kind, name), context)

    def new(self, action, kind, tags, extra=None):
        context = dict(self.base, **tag_context("aws:RequestTag", tags), **(extra or {}))
        return (action, self.arn(kind, "*"), context)

    def tag_on_create(self, call, tags_by_type):
        create = {"ec2:CreateAction": [call]}
        return [self.new("ec2:CreateTags", kind, tags, create) for kind, tags in tags_by_type.items() if tags]

    def key_pair(self, action, name=None, key_id=None):
        """A check on an existing key pair, named by name or id (its ARN names it by name)."""
        try:
            pairs = list(self.backend.key_pairs.values())
        except Exception:  # noqa: BLE001
            pairs = []
        found = next((p for p in pairs if p.key_name == name or p.id == key_id), None)
        name = name or (found.key_name if found else key_id)
        return self.existing(action, "key-pair", name, tag_id=found.id if found else None)

    def checks(self, action, params):
        if action.startswith("Describe"):
            return [(f"ec2:{action}", "*", dict(self.base))]
        if action == "RunInstances":
            return self.run_instances(params)
        if action in CREATE_WITH_TAGS:
            return self.create(action, params)
        if action in ON_INSTANCES:
            return [self.existing(f"ec2:{action}", "instance", i) for i in values(params, ON_INSTANCES[action])]
        if action == "DeleteKeyPair":
            name = (values(params, "KeyName") or [None])[0]
            return [self.key_pair("ec2:DeleteKeyPair", name, *values(params, "KeyPairId"))]
        if action in ON_GROUP:
            groups = [self.group_id(g) for g in self.groups_named(params)]
            return [self.existing(f"ec2:{action}", "security-group", g) for g in groups]
        if action in ("CreateTags", "DeleteTags"):
            return self.tagging(action, params)
        return [(f"ec2:{action}", "*", dict(self.base))]

    def group_id(self, name_or_id):
        try:
            group = self.backend.get_security_group_by_name_or_id(name_or_id)
        except Exception:  # noqa: BLE001
            group = None
        return group.id if group else name_or_id

    def groups_named(self, params):
        return values(params, "GroupId") or values(params, "GroupName")

    def default_vpc_id(self):
        try:
            vpc = self.backend.get_default_vpc()
        except Exception:  # noqa: BLE001
            vpc = None
        return vpc.id if vpc else "*"

    def create(self, action, params):
        kind = CREATE_WITH_TAGS[action]
        tags = request_tags(params).get(kind, {})
        if kind == "key-pair":
            name = values(params, "KeyName")[0] if values(params, "KeyName") else "*"
            checks = [(f"ec2:{action}", self.arn(kind, name), dict(self.base, **tag_context("aws:RequestTag", tags)))]
        else:
            vpc = (values(params, "VpcId") or [self.default_vpc_id()])[0]
            checks = [self.new(f"ec2:{action}", kind, tags), self.existing(f"ec2:{action}", "vpc", vpc)]
        create = {"ec2:CreateAction": [action]}
        if tags:
            _, resource, context = checks[0]
            checks.append(("ec2:CreateTags", resource, dict(context, **create)))
        return checks

    def tagging(self, action, params):
        tags = tags_of(params, "Tag.")
        out = []
        for resource_id in values(params, "ResourceId."):
            kind = next((k for p, k in RESOURCE_PREFIXES.items() if resource_id.startswith(p)), None)
            extra = tag_context("aws:RequestTag", tags)
            if kind == "key-pair":
                out.append(self.key_pair(f"ec2:{action}", key_id=resource_id))
                out[-1][2].update(extra)
            elif kind:
                out.append(self.existing(f"ec2:{action}", kind, resource_id, extra=extra))
            else:
                arn = f"arn:aws:ec2:{self.region}:{self.account}:*/{resource_id}"
                out.append((f"ec2:{action}", arn, dict(self.base, **extra)))
        return out

    def run_instances(self, params):
        tags = request_tags(params)
        run = "ec2:RunInstances"
        checks = [self.new(run, "instance", tags.get("instance", {})), self.new(run, "volume", tags.get("volume", {}))]
        checks.append(self.new(run, "network-interface", tags.get("network-interface", {})))
        checks += [self.existing(run, "image", i) for i in values(params, "ImageId")]
        checks += [self.existing(run, "snapshot", s) for s in self.snapshots_of(values(params, "ImageId"))]
        checks.append(self.existing(run, "subnet", (values(params, "SubnetId") or [self.default_subnet()])[0]))
        groups = [self.group_id(g) for g in values(params, "SecurityGroupId.") + values(params, "SecurityGroup.")]
        checks += [self.existing(run, "security-group", g) for g in groups or [self.default_group()]]
        checks += [self.key_pair(run, name=k) for k in values(params, "KeyName")]
        checks += [self.existing(run, "placement-group", g) for g in values(params, "Placement.GroupName")]
        checks += self.tag_on_create("RunInstances", tags)
        profile = (values(params, "IamInstanceProfile.Arn") or values(params, "IamInstanceProfile.Name") or [None])[0]
        if profile:
            passed = {"iam:PassedToService": ["ec2.amazonaws.com"]}
            checks += [("iam:PassRole", role, dict(self.base, **passed)) for role in self.roles_of(profile)]
        return checks

    def snapshots_of(self, images):
        """The snapshots an EBS-backed image's volumes are made from (moto keeps one per image)."""
        out = []
        for image_id in images:
            try:
                snapshot = getattr(self.backend.amis.get(image_id), "ebs_snapshot", None)
            except Exception:  # noqa: BLE001
                snapshot = None
            if snapshot is not None:
                out.append(snapshot.id)
        return out

    def default_subnet(self):
        try:
            subnets = sorted(self.backend.get_default_subnets().values(), key=lambda s: s.availability_zone)
        except Exception:  # noqa: BLE001
            subnets = []
        return subnets[0].id if subnets else "*"

    def default_group(self):
        try:
            group = self.backend.get_default_security_group()
        except Exception:  # noqa: BLE001
            group = None
        return group.id if group else "*"

    def roles_of(self, profile):
        """The ARNs of the roles in an instance profile (a name or an ARN)."""
        name = profile.rsplit("/", 1)[-1]
        try:
            for candidate in self.iam.get_instance_profiles():
                if profile in (candidate.name, candidate.arn):
                    return [role.arn for role in candidate.roles]
        except Exception:  # noqa: BLE001
            pass
        return [f"arn:aws:iam::{self.account}:role/{name}"]
