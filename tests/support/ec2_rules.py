"""What real EC2 refuses in a request and moto lets through, so that no test passes on a request EC2
would reject.

`refusal(action, params, backend)` answers (code, message) for the first problem of a request, or
None: first what EC2's API model states (ec2_rules_model.py: parameters, required members, enums,
ranges, lengths, patterns), then EC2's documented rules below (RULES), each a small function that
cites its rule: the cross-field ones, and the text constraints the model states only in its
documentation (`documented_text`). `backend` is moto's EC2 backend of the call's region, read only (for the rules that
depend on what exists: a key pair's type, an image's platform). moto_launcher.py calls it for every
EC2 call not signed by the oracle, DryRun calls included (EC2 validates a request before it answers
DryRunOperation).
"""

import base64
import functools
import html
import re
from xml.sax.saxutils import escape

from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_ssh_public_key

from ec2_rules_model import Refused, check, model, operation

# Tags (EC2 User Guide, "Tag restrictions"): at most 50 per resource, a key of at most 128 Unicode
# characters, a value of at most 256, each key once per resource, and the `aws:` prefix, in any
# combination of upper and lower case, kept for AWS's own use.
MAX_TAGS = 50
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 256
# EC2 API reference, "Filter": at most 200 values in one filter of one call (FilterLimitExceeded).
MAX_FILTER_VALUES = 200
# Ids listed by name in a Describe call: the same bound as a filter's values (EC2 looks them up as an
# id filter), unless the member's own documentation gives its own ("Maximum 100 ... IDs").
MAX_DESCRIBE_IDS = 200
# "You can specify a value between 5 and 1000" (DescribeInstances, DescribeInstanceStatus MaxResults:
# the model leaves the range out for these two).
MAX_RESULTS_RANGE = {"DescribeInstances": (5, 1000), "DescribeInstanceStatus": (5, 1000)}
# User data: "limited to 16 KB, in raw form, before it is base64-encoded" (RunInstances UserData).
MAX_USER_DATA = 16 * 1024


def refusal(action, params, backend=None):
    """(code, message) of EC2's answer to a request it refuses, or None when EC2 would take it."""
    if operation(action) is None:
        return None
    try:
        tree = check(action, params)
        for rule in RULES:
            rule(action, tree, backend)
    except Refused as refused:
        return refused.code, escape(refused.message)  # it goes into EC2's XML error body as it is
    return None


def lists_of(node, shape, member_shape):
    """Every list in the request whose elements are of shape `member_shape` (e.g. "Tag", "Filter")."""
    if shape.type_name == "structure" and isinstance(node, dict):
        for name, value in node.items():
            yield from lists_of(value, shape.members[name], member_shape)
    elif shape.type_name == "list" and isinstance(node, list):
        if shape.member.name == member_shape:
            yield node
        for element in node:
            yield from lists_of(element, shape.member, member_shape)


def invalid(message, code="InvalidParameterValue"):
    return Refused(code, message)


def tag_sets(action, tree, _backend):
    """EC2 User Guide, "Tag restrictions", for every tag set in the request (each TagSpecification's,
    CreateTags' own): keys unique ("Duplicate tag key 'Name' specified"), key 1..128 characters, value
    at most 256, at most 50 tags, no key starting `aws:` in any case."""
    for tags in lists_of(tree, operation(action).input_shape, "Tag"):
        if len(tags) > MAX_TAGS:
            raise invalid(f"The maximum number of tags ({MAX_TAGS}) has been exceeded: {len(tags)} given", "TagLimitExceeded")
        keys = set()
        for tag in tags:
            key, value = tag.get("Key", ""), tag.get("Value", "")
            if key in keys:
                raise invalid(f"Duplicate tag key '{key}' specified.")
            keys.add(key)
            if not 1 <= len(key) <= MAX_TAG_KEY:
                raise invalid(f"Tag key must be between 1 and {MAX_TAG_KEY} characters long: '{key[:40]}...' has {len(key)}")
            if len(value) > MAX_TAG_VALUE:
                raise invalid(f"Tag value exceeds the maximum length of {MAX_TAG_VALUE} characters: {len(value)} for key '{key}'")
            if key.lower().startswith("aws:"):
                raise invalid(f"Tag keys starting with 'aws:' are reserved for internal use: '{key}'")


# What each call's TagSpecifications may tag (RunInstances: "You can specify tags for the following
# resources only: Instances, Volumes, Spot Instance requests, Network interfaces"; the others: "the
# tags to apply to the imported key pair", "to assign to the security group").
TAGGABLE = {
    "RunInstances": {"instance", "volume", "spot-instances-request", "network-interface"},
    "ImportKeyPair": {"key-pair"},
    "CreateKeyPair": {"key-pair"},
    "CreateSecurityGroup": {"security-group"},
}


def tag_specifications(action, tree, _backend):
    """Each TagSpecification names the resource type it tags, one this call creates, and only once:
    "'image' is not a valid taggable resource type for this operation"."""
    seen = set()
    for spec in tree.get("TagSpecifications", []):
        kind = spec.get("ResourceType")
        if kind is None:
            raise invalid("Tag specification resource type must have a value")
        if action in TAGGABLE and kind not in TAGGABLE[action]:
            raise invalid(f"'{kind}' is not a valid taggable resource type for this operation.")
        if kind in seen:
            raise invalid(f"Tag specification resource type '{kind}' is specified more than once.")
        seen.add(kind)


def network_interfaces(action, tree, _backend):
    """RunInstances, NetworkInterfaces: "If you specify a network interface, you must specify any
    security groups and subnets as part of the network interface, instead of using the
    SecurityGroupIds and SubnetId parameters" (InvalidParameterCombination); and
    AssociatePublicIpAddress "can only be assigned to a new network interface, not an existing one...
    applies only to the primary network interface (DeviceIndex 0)" and not when launching with more
    than one network interface."""
    interfaces = tree.get("NetworkInterfaces") if action == "RunInstances" else None
    if not interfaces:
        return
    for member, query in (("SubnetId", "subnet ID"), ("SecurityGroupIds", "security groups"), ("SecurityGroups", "security groups")):
        if tree.get(member):
            raise invalid(
                f"Network interfaces and an instance-level {query} may not be specified on the same request",
                "InvalidParameterCombination",
            )
    for interface in interfaces:
        if "AssociatePublicIpAddress" not in interface:
            continue
        if interface.get("DeviceIndex") != 0:
            raise invalid(
                "The associatePublicIPAddress parameter can only be specified for the network interface with DeviceIndex 0.",
                "InvalidParameterCombination",
            )
        if len(interfaces) > 1:
            raise invalid(
                "The associatePublicIPAddress parameter cannot be specified when launching with multiple network interfaces.",
                "InvalidParameterCombination",
            )
        if interface.get("NetworkInterfaceId"):
            raise invalid(
                "The associatePublicIPAddress parameter cannot be specified for an existing network interface.",
                "InvalidParameterCombination",
            )


def metadata_options(action, tree, _backend):
    """InstanceMetadataOptionsRequest: "HttpPutResponseHopLimit ... Possible values: Integers from 1
    to 64" (the enums, HttpTokens among them, are the model's own)."""
    options = tree.get("MetadataOptions") if action in ("RunInstances", "ModifyInstanceMetadataOptions") else None
    if action == "ModifyInstanceMetadataOptions":
        options = tree
    hops = (options or {}).get("HttpPutResponseHopLimit")
    if hops is not None and not 1 <= hops <= 64:
        raise invalid(f"Value ({hops}) for parameter HttpPutResponseHopLimit is invalid. It must be between 1 and 64.")


# EC2 User Guide, "Tag restrictions": with instance tags in the instance metadata, "instance tag keys
# can only use letters (a-z, A-Z), numbers (0-9), and the following characters: + - = . , _ : @. Instance
# tag keys can't contain spaces or /, and can't comprise only . (one period), .. (two periods), or
# _index."
METADATA_TAG_KEY = re.compile(r"[a-zA-Z0-9+\-=.,_:@]+")


def metadata_tag_keys(action, tree, _backend):
    """RunInstances with MetadataOptions.InstanceMetadataTags enabled: the instance's tag keys as
    METADATA_TAG_KEY says."""
    if action != "RunInstances" or (tree.get("MetadataOptions") or {}).get("InstanceMetadataTags") != "enabled":
        return
    for spec in tree.get("TagSpecifications", []):
        if spec.get("ResourceType") != "instance":
            continue
        for tag in spec.get("Tags", []):
            key = tag.get("Key", "")
            if not METADATA_TAG_KEY.fullmatch(key) or key in (".", "..", "_index"):
                raise invalid(f"The tag key '{key}' is not allowed when instance tags in metadata are enabled.")


# EBS volume types (Amazon EBS User Guide, "Amazon EBS volume types"): size in GiB, IOPS, throughput
# in MiB/s, and the most IOPS per GiB; None where the type takes no such setting.
EBS = {
    "gp2": {"size": (1, 16384), "iops": None, "throughput": None},
    "gp3": {"size": (1, 65536), "iops": (3000, 80000), "throughput": (125, 2000), "per_gib": 500},
    "io1": {"size": (4, 16384), "iops": (100, 64000), "throughput": None, "per_gib": 50},
    "io2": {"size": (4, 65536), "iops": (100, 256000), "throughput": None, "per_gib": 1000},
    "st1": {"size": (125, 16384), "iops": None, "throughput": None},
    "sc1": {"size": (125, 16384), "iops": None, "throughput": None},
    "standard": {"size": (1, 1024), "iops": None, "throughput": None},
}


def ebs_volumes(action, tree, _backend):
    """EbsBlockDevice (RunInstances BlockDeviceMappings) and CreateVolume: "Iops ... required for io1
    and io2 volumes... not supported for gp2, st1, sc1, or standard volumes"; "Throughput ... valid
    only for gp3 volumes"; each type's size, IOPS and throughput ranges and IOPS per GiB."""
    if action == "RunInstances":
        volumes = [m["Ebs"] for m in tree.get("BlockDeviceMappings", []) if "Ebs" in m]
    elif action == "CreateVolume":
        volumes = [tree]
    else:
        return
    for volume in volumes:
        kind = volume.get("VolumeType", "gp2")
        limits = EBS[kind]
        iops, throughput, size = volume.get("Iops"), volume.get("Throughput"), volume.get("VolumeSize", volume.get("Size"))
        if iops is None and kind in ("io1", "io2"):
            raise invalid(f"The parameter iops must be specified for {kind} volumes.", "InvalidParameterDependency")
        if iops is not None and limits["iops"] is None:
            raise invalid(f"The parameter iops is not supported for {kind} volumes.", "InvalidParameterCombination")
        if throughput is not None and limits["throughput"] is None:
            raise invalid(f"The parameter throughput is not supported for {kind} volumes.", "InvalidParameterCombination")
        for value, name, (low, high) in (
            (size, "size", limits["size"]),
            (iops, "iops", limits["iops"] or (0, 0)),
            (throughput, "throughput", limits["throughput"] or (0, 0)),
        ):
            if value is not None and not low <= value <= high:
                raise invalid(f"Volume {name} {value} is outside the range {low}-{high} of {kind} volumes.")
        if iops is not None and size and iops > max(limits["iops"][0], size * limits["per_gib"]):
            raise invalid(f"Iops to volume size ratio of {iops / size:.1f} is too high; maximum is {limits['per_gib']}.")


@functools.lru_cache(maxsize=None)
def ids_with_max_results(action):
    """The ids member a Describe call's documentation says MaxResults can't go with ("You cannot
    specify this parameter and the instance IDs parameter in the same request"), or None."""
    shape = operation(action).input_shape
    doc = shape.members["MaxResults"].documentation if "MaxResults" in shape.members else ""
    if not re.search(r"(cannot|can't) specify this parameter and the", doc or ""):
        return None
    ids = [n for n, m in shape.members.items() if n.endswith("Ids") and m.type_name == "list"]
    return ids[0] if len(ids) == 1 else None


def paging(action, tree, _backend):
    """Describe calls: ids together with MaxResults where the call's documentation refuses it
    (InvalidParameterCombination), and MaxResults within 5..1000 where the model leaves the range
    out (MAX_RESULTS_RANGE)."""
    ids = ids_with_max_results(action)
    if ids and tree.get(ids) and "MaxResults" in tree:
        raise invalid(f"The parameter {ids} cannot be used with the parameter MaxResults", "InvalidParameterCombination")
    low, high = MAX_RESULTS_RANGE.get(action, (None, None))
    results = tree.get("MaxResults")
    if low is not None and results is not None and not low <= results <= high:
        raise invalid(f"Value ({results}) for parameter MaxResults is invalid. Expecting a value between {low} and {high}.")


@functools.lru_cache(maxsize=None)
def id_limits(action):
    """Each top-level list of ids and the most it takes: its documentation's "Maximum N ..." or "Up
    to N ...", else MAX_DESCRIBE_IDS for a Describe call, else none."""
    limits = {}
    for name, member in operation(action).input_shape.members.items():
        if not name.endswith("Ids") or member.type_name != "list":
            continue
        found = re.search(r"(?:Maximum|Up to) (\d+) [\w ]*IDs", member.documentation or "")
        if found:
            limits[name] = int(found.group(1))
        elif action.startswith("Describe"):
            limits[name] = MAX_DESCRIBE_IDS
    return limits


def value_counts(action, tree, _backend):
    """EC2 API reference, "Filter": at most 200 values per filter (FilterLimitExceeded); ids named in
    one call within their documented bound (TerminateInstances: "Up to 1000 instance IDs";
    DescribeInstanceStatus: "Maximum 100 explicitly specified instance IDs")."""
    for filters in lists_of(tree, operation(action).input_shape, "Filter"):
        for each in filters:
            if len(each.get("Values", [])) > MAX_FILTER_VALUES:
                raise invalid(
                    f"The maximum number of filter values specified on a single call is {MAX_FILTER_VALUES}",
                    "FilterLimitExceeded",
                )
    for name, most in id_limits(action).items():
        if len(tree.get(name, [])) > most:
            raise invalid(f"The maximum number of {name} specified on a single call is {most}: {len(tree[name])} given")


def instance_counts(action, tree, _backend):
    """RunInstances: "MinCount ... must be greater than zero"; MaxCount not below MinCount; user data
    at most 16 KB before base64 encoding."""
    if action != "RunInstances":
        return
    low, high = tree.get("MinCount"), tree.get("MaxCount")
    if low is not None and low < 1:
        raise invalid(f"Value ({low}) for parameter minCount is invalid. Expected a positive integer.")
    if high is not None and low is not None and high < low:
        raise invalid(f"Value ({high}) for parameter maxCount is invalid. It must be at least minCount ({low}).")
    data = tree.get("UserData")
    if data is not None:
        try:
            raw = base64.b64decode(data, validate=True)
        except ValueError:
            raise invalid("Invalid BASE64 encoding of user data.") from None
        if len(raw) > MAX_USER_DATA:
            raise invalid(f"User data is limited to {MAX_USER_DATA} bytes: {len(raw)} given.")


def public_key(material):
    """The key in ImportKeyPair's material (OpenSSH, RFC 4716 or base64 DER), or None."""
    text = material.decode("utf-8", "replace").strip()
    if text.startswith("---- BEGIN SSH2 PUBLIC KEY ----"):
        lines = [line for line in text.splitlines()[1:-1] if ":" not in line]
        try:
            return load_der_public_key(base64.b64decode("".join(lines)))
        except ValueError:
            return None
    try:
        return load_ssh_public_key(text.encode())
    except (ValueError, TypeError):
        pass
    try:
        return load_der_public_key(base64.b64decode(text))
    except ValueError:
        return None


def key_types(action, tree, backend):
    """ImportKeyPair: "Supported formats: OpenSSH public key format, base64 encoded DER format, SSH
    public key file format (RFC 4716)... Supported key types: RSA and ED25519... Supported lengths:
    1024, 2048, and 4096" (3072 as well today). RunInstances: "ED25519 keys are not supported for
    Windows instances"."""
    if action == "ImportKeyPair":
        key = public_key(tree.get("PublicKeyMaterial", b""))
        rsa_ok = isinstance(key, rsa.RSAPublicKey) and key.key_size in (1024, 2048, 3072, 4096)
        if not (rsa_ok or isinstance(key, ed25519.Ed25519PublicKey)):
            raise invalid("Key is not in valid OpenSSH public key format", "InvalidKey.Format")
    if action == "RunInstances" and backend is not None and tree.get("KeyName") and tree.get("ImageId"):
        pair = backend.key_pairs.get(tree["KeyName"])
        image = backend.amis.get(tree["ImageId"])
        if pair is not None and image is not None and getattr(pair, "key_type", None) == "ed25519":
            if (getattr(image, "platform", None) or "").lower() == "windows":
                raise invalid("ED25519 key pairs are not supported for Windows instances.", "InvalidParameterCombination")


def strings(node, shape):
    """Every string in the request with the member it is sent as: (member name, member shape, value)."""
    if shape.type_name == "structure" and isinstance(node, dict):
        for name, value in node.items():
            member = shape.members[name]
            if member.type_name == "string":
                yield name, member, value
            else:
                yield from strings(value, member)
    elif shape.type_name == "list" and isinstance(node, list):
        for element in node:
            yield from strings(element, shape.member)


@functools.lru_cache(maxsize=None)
def documented(doc):
    """What a member's documentation states about its text, as the model has no trait for it:
    (most characters, ASCII only, allowed characters as a regex or None, a prefix it can't start with
    or None). E.g. CreateSecurityGroup GroupName: "Constraints: Up to 255 characters in length. Can't
    start with sg-. Valid characters: a-z, A-Z, 0-9, spaces, and ._-:/()#,@[]+=&;{}!$*"."""
    text = html.unescape(re.sub(r"<[^>]+>", "", doc or ""))
    most = re.search(r"Constraints: (?:Up to|Maximum) (\d+) (ASCII )?characters", text)
    allowed = re.search(r"(?:Valid characters:|Allowed characters are) a-z, A-Z, 0-9, spaces, and (\S+)", text)
    prefix = re.search(r"Can't start with (\S+?)\.?(?:\s|$)", text)
    return (
        int(most.group(1)) if most else None,
        bool(most and most.group(2)),
        re.compile(f"[a-zA-Z0-9 {re.escape(allowed.group(1))}]*") if allowed else None,
        prefix.group(1) if prefix else None,
    )


def documented_text(action, tree, _backend):
    """Each string against its member's documented constraints (`documented`): security group names
    and descriptions and their rules' descriptions (255 characters of a-z, A-Z, 0-9, spaces and
    ._-:/()#,@[]+=&;{}!$*; a group name not starting `sg-`), key pair names (255 ASCII characters),
    client tokens (64 ASCII characters)."""
    for name, member, value in strings(tree, operation(action).input_shape):
        most, ascii_only, allowed, prefix = documented(member.documentation)
        if most is not None and len(value) > most:
            raise invalid(f"Value for parameter {name} is invalid. Length exceeds maximum of {most} characters: {len(value)}.")
        if ascii_only and not value.isascii():
            raise invalid(f"Value ({value[:64]}) for parameter {name} is invalid. Only ASCII characters are allowed.")
        if allowed is not None and not allowed.fullmatch(value):
            raise invalid(f"Value ({value[:64]}) for parameter {name} is invalid. Character sets beyond ASCII are not supported.")
        if prefix is not None and value.startswith(prefix):
            raise invalid(f"Value ({value[:64]}) for parameter {name} is invalid. Group names may not be in the format {prefix}*")


RULES = [tag_sets, tag_specifications, network_interfaces, metadata_options, metadata_tag_keys, ebs_volumes, paging, value_counts, instance_counts, key_types, documented_text]

__all__ = ["refusal", "model"]
