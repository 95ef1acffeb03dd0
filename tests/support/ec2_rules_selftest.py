"""Self-test of ec2_rules.py through the launcher: one check per rule class proving the launcher refuses
what EC2 refuses, and one that a well-formed request passes. Run by moto_launcher_selftest.py.

Requests are sent raw (the query parameters as an SDK flattens them) so that what a client-side
validator would stop still reaches the launcher, as it does from a client that validates nothing.
"""

import base64
import json
import urllib.error
import urllib.parse
import urllib.request

from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa

AMI = "ami-03cf127a"
RUN = {"ImageId": AMI, "InstanceType": "t3.micro", "MinCount": "1", "MaxCount": "1"}


def raw(m, action, params, key="testing"):
    """(HTTP status, error code or None) of an EC2 query call with exactly these parameters."""
    body = urllib.parse.urlencode({"Action": action, "Version": "2016-11-15", **params}).encode()
    auth = f"AWS4-HMAC-SHA256 Credential={key}/20260101/eu-west-1/ec2/aws4_request, SignedHeaders=host, Signature=0"
    request = urllib.request.Request(
        f"http://127.0.0.1:{m.port}/",
        data=body,
        headers={"Authorization": auth, "Content-Type": "application/x-www-form-urlencoded"},
    )
    try:
        with urllib.request.urlopen(request) as answer:
            return answer.status, None
    except urllib.error.HTTPError as e:
        text = e.read().decode()
        code = text.split("<Code>", 1)[1].split("</Code>", 1)[0] if "<Code>" in text else text
        return e.code, code


def refused(m, action, params, code):
    got = raw(m, action, params)
    assert got == (400, code), f"{action} {json.dumps(params)[:300]}: {got}, wanted {code}"


def passes(m, action, params):
    got = raw(m, action, params)
    assert got == (200, None), f"{action} {json.dumps(params)[:300]}: {got}"


def tags(prefix, pairs):
    out = {}
    for i, (k, v) in enumerate(pairs, 1):
        out[f"{prefix}.{i}.Key"] = k
        out[f"{prefix}.{i}.Value"] = v
    return out


def instance_tags(pairs):
    return {"TagSpecification.1.ResourceType": "instance", **tags("TagSpecification.1.Tag", pairs)}


def check_well_formed(m, _ec2):
    """A RunInstances as amiprobe sends one, with every part the rules look at, passes; so do its
    DryRun and the calls around it."""
    request = {
        **RUN,
        "ClientToken": "t-1",
        **instance_tags([("amiprobe:run-id", "r1"), ("Name", "x" * 256), ("k" * 128, "v")]),
        "TagSpecification.2.ResourceType": "volume",
        **tags("TagSpecification.2.Tag", [("amiprobe:run-id", "r1")]),
        "BlockDeviceMapping.1.DeviceName": "/dev/xvda",
        "BlockDeviceMapping.1.Ebs.VolumeSize": "20",
        "BlockDeviceMapping.1.Ebs.VolumeType": "gp3",
        "BlockDeviceMapping.1.Ebs.Iops": "4000",
        "BlockDeviceMapping.1.Ebs.Throughput": "250",
        "MetadataOptions.HttpTokens": "required",
        "MetadataOptions.HttpPutResponseHopLimit": "2",
        "NetworkInterface.1.DeviceIndex": "0",
        "NetworkInterface.1.AssociatePublicIpAddress": "true",
        "UserData": base64.b64encode(b"#!/bin/sh\n").decode(),
    }
    assert raw(m, "RunInstances", {**request, "DryRun": "true"}) == (412, "DryRunOperation")
    passes(m, "RunInstances", request)
    passes(m, "DescribeInstances", {"Filter.1.Name": "instance-id", **{f"Filter.1.Value.{i}": f"i-{i:017x}" for i in range(1, 201)}})
    passes(m, "DescribeInstances", {"MaxResults": "5"})
    assert m.get("/calls").get("refused:RunInstances", 0) == 0


def check_model(m, _ec2):
    """What the API model states: parameters it has, required members, enums, ranges, types."""
    refused(m, "RunInstances", {**RUN, "Bogus": "1"}, "UnknownParameter")
    refused(m, "RunInstances", {**RUN, "TagSpecification.1.Tagz.1.Key": "k"}, "UnknownParameter")
    refused(m, "RunInstances", {k: v for k, v in RUN.items() if k != "MaxCount"}, "MissingParameter")
    refused(m, "RunInstances", {**RUN, "InstanceType": "t3.enormous"}, "InvalidParameterValue")
    refused(m, "DescribeSecurityGroups", {"MaxResults": "2"}, "InvalidParameterValue")
    refused(m, "CreateTags", {"ResourceId.1": "i-1"}, "MissingParameter")
    # Refused before anything is done: counted, recorded, and nothing launched.
    calls = m.get("/calls")
    assert calls["refused:RunInstances"] == 4, calls
    assert len(m.get("/requests?action=RunInstances")) == 4


def check_tag_sets(m, _ec2):
    """Tag restrictions: unique keys, key <= 128, value <= 256, <= 50 tags, no `aws:` in any case;
    on RunInstances, ImportKeyPair and CreateTags alike, and on a DryRun too; tag specifications of a
    resource type the call creates, each once."""
    duplicate = instance_tags([("Name", "amiprobe web"), ("Name", "web-appliance")])
    refused(m, "RunInstances", {**RUN, **duplicate}, "InvalidParameterValue")
    refused(m, "RunInstances", {**RUN, **duplicate, "DryRun": "true"}, "InvalidParameterValue")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    material = base64.b64encode(key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)).decode()
    pair = {"KeyName": "k", "PublicKeyMaterial": material, "TagSpecification.1.ResourceType": "key-pair"}
    refused(m, "ImportKeyPair", {**pair, **tags("TagSpecification.1.Tag", [("Name", "a"), ("Name", "b")])}, "InvalidParameterValue")
    refused(m, "CreateTags", {"ResourceId.1": "i-1", **tags("Tag", [("a", "1"), ("a", "2")])}, "InvalidParameterValue")
    refused(m, "RunInstances", {**RUN, **instance_tags([("Name", "x" * 257)])}, "InvalidParameterValue")
    refused(m, "RunInstances", {**RUN, **instance_tags([("k" * 129, "v")])}, "InvalidParameterValue")
    refused(m, "RunInstances", {**RUN, **instance_tags([(f"k{i}", "v") for i in range(51)])}, "TagLimitExceeded")
    for reserved in ("aws:x", "AWS:x", "Aws:x"):
        refused(m, "RunInstances", {**RUN, **instance_tags([(reserved, "v")])}, "InvalidParameterValue")
    passes(m, "ImportKeyPair", {**pair, **tags("TagSpecification.1.Tag", [(f"k{i}", "v") for i in range(50)])})
    # Each tag specification names a type this call creates, once.
    refused(m, "ImportKeyPair", {**pair, "TagSpecification.1.ResourceType": "instance", **tags("TagSpecification.1.Tag", [("a", "1")])}, "InvalidParameterValue")
    refused(m, "RunInstances", {**RUN, **tags("TagSpecification.1.Tag", [("a", "1")])}, "InvalidParameterValue")
    twice = {**instance_tags([("a", "1")]), "TagSpecification.2.ResourceType": "instance", **tags("TagSpecification.2.Tag", [("b", "2")])}
    refused(m, "RunInstances", {**RUN, **twice}, "InvalidParameterValue")
    # The oracle (the tests' own client) is exempt: its view is set up, not checked.
    assert raw(m, "RunInstances", {**RUN, **duplicate}, key="oracle")[0] == 200


def check_network_interfaces(m, _ec2):
    """Network interfaces vs instance-level subnet and groups; a public address only on DeviceIndex 0
    of a single new interface."""
    interface = {"NetworkInterface.1.DeviceIndex": "0"}
    refused(m, "RunInstances", {**RUN, **interface, "SubnetId": "subnet-1"}, "InvalidParameterCombination")
    refused(m, "RunInstances", {**RUN, **interface, "SecurityGroupId.1": "sg-1"}, "InvalidParameterCombination")
    public = {"NetworkInterface.1.DeviceIndex": "1", "NetworkInterface.1.AssociatePublicIpAddress": "true"}
    refused(m, "RunInstances", {**RUN, **public}, "InvalidParameterCombination")
    two = {**interface, "NetworkInterface.1.AssociatePublicIpAddress": "true", "NetworkInterface.2.DeviceIndex": "1"}
    refused(m, "RunInstances", {**RUN, **two}, "InvalidParameterCombination")


def check_metadata_options(m, _ec2):
    """IMDS options: HttpTokens from its enum, a hop limit of 1 to 64, tag keys fit for the metadata."""
    refused(m, "RunInstances", {**RUN, "MetadataOptions.HttpTokens": "sometimes"}, "InvalidParameterValue")
    refused(m, "RunInstances", {**RUN, "MetadataOptions.HttpPutResponseHopLimit": "65"}, "InvalidParameterValue")
    refused(m, "RunInstances", {**RUN, "MetadataOptions.HttpPutResponseHopLimit": "0"}, "InvalidParameterValue")
    # With instance tags in the metadata, the instance's tag keys are restricted; amiprobe's own pass.
    in_metadata = {**RUN, "MetadataOptions.InstanceMetadataTags": "enabled"}
    refused(m, "RunInstances", {**in_metadata, **instance_tags([("team/name", "v")])}, "InvalidParameterValue")
    refused(m, "RunInstances", {**in_metadata, **instance_tags([("my team", "v")])}, "InvalidParameterValue")
    passes(m, "RunInstances", {**in_metadata, **instance_tags([("amiprobe:run-id", "r1"), ("Name", "a b/c")])})


def check_ebs(m, _ec2):
    """EBS: Iops only on io1/io2/gp3 and required on io1/io2, Throughput only on gp3, each type's size."""

    def volume(**ebs):
        return {**RUN, "BlockDeviceMapping.1.DeviceName": "/dev/sdf", **{f"BlockDeviceMapping.1.Ebs.{k}": str(v) for k, v in ebs.items()}}

    refused(m, "RunInstances", volume(VolumeSize=10, VolumeType="gp2", Iops=3000), "InvalidParameterCombination")
    refused(m, "RunInstances", volume(VolumeSize=10, VolumeType="io1"), "InvalidParameterDependency")
    refused(m, "RunInstances", volume(VolumeSize=10, VolumeType="io2", Iops=3000, Throughput=200), "InvalidParameterCombination")
    refused(m, "RunInstances", volume(VolumeSize=70000, VolumeType="gp3"), "InvalidParameterValue")
    refused(m, "RunInstances", volume(VolumeSize=10, VolumeType="st1"), "InvalidParameterValue")
    refused(m, "RunInstances", volume(VolumeSize=10, VolumeType="io1", Iops=5000), "InvalidParameterValue")
    passes(m, "RunInstances", volume(VolumeSize=10, VolumeType="io1", Iops=500))


def check_paging(m, _ec2):
    """Ids together with MaxResults where the call refuses it; MaxResults in 5..1000."""
    refused(m, "DescribeInstances", {"InstanceId.1": "i-1", "MaxResults": "10"}, "InvalidParameterCombination")
    refused(m, "DescribeInstanceStatus", {"InstanceId.1": "i-1", "MaxResults": "10"}, "InvalidParameterCombination")
    refused(m, "DescribeInstances", {"MaxResults": "4"}, "InvalidParameterValue")
    refused(m, "DescribeInstances", {"MaxResults": "1001"}, "InvalidParameterValue")


def check_value_counts(m, _ec2):
    """At most 200 values in a filter; ids per call within their documented bound."""
    values = {f"Filter.1.Value.{i}": f"i-{i:017x}" for i in range(1, 202)}
    refused(m, "DescribeInstances", {"Filter.1.Name": "instance-id", **values}, "FilterLimitExceeded")
    ids = {f"InstanceId.{i}": f"i-{i:017x}" for i in range(1, 102)}
    refused(m, "DescribeInstanceStatus", ids, "InvalidParameterValue")
    refused(m, "DescribeInstances", {f"InstanceId.{i}": f"i-{i:017x}" for i in range(1, 202)}, "InvalidParameterValue")


def check_instance_counts(m, _ec2):
    """RunInstances: MinCount >= 1, MaxCount >= MinCount, user data <= 16 KB."""
    refused(m, "RunInstances", {**RUN, "MinCount": "2", "MaxCount": "1"}, "InvalidParameterValue")
    refused(m, "RunInstances", {**RUN, "MinCount": "0"}, "InvalidParameterValue")
    data = base64.b64encode(b"x" * (16 * 1024 + 1)).decode()
    refused(m, "RunInstances", {**RUN, "UserData": data}, "InvalidParameterValue")


def check_key_types(m, _ec2):
    """ImportKeyPair takes RSA (1024 to 4096 bits) and ED25519 keys only, not ECDSA or DSA (the ed25519-on-Windows rule
    is in the windows password check)."""
    for name, key in (
        ("ecdsa", ec.generate_private_key(ec.SECP256R1()).public_key()),
        ("dsa", dsa.generate_private_key(key_size=1024).public_key()),
    ):
        material = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        refused(m, "ImportKeyPair", {"KeyName": name, "PublicKeyMaterial": base64.b64encode(material).decode()}, "InvalidKey.Format")
    refused(m, "ImportKeyPair", {"KeyName": "junk", "PublicKeyMaterial": base64.b64encode(b"ssh-rsa junk").decode()}, "InvalidKey.Format")


def check_documented_text(m, ec2):
    """Strings within their documented constraints: security group names and descriptions (255
    characters of a set, a name not starting `sg-`), rule descriptions, key names, client tokens."""
    group = {"GroupName": "amiprobe-r1", "GroupDescription": "amiprobe run r1: the probed ports from --probe-from"}
    refused(m, "CreateSecurityGroup", {**group, "GroupName": "sg-mine"}, "InvalidParameterValue")
    refused(m, "CreateSecurityGroup", {**group, "GroupName": "g" * 256}, "InvalidParameterValue")
    refused(m, "CreateSecurityGroup", {**group, "GroupDescription": "ports <80>"}, "InvalidParameterValue")
    # The message quotes the value: still EC2's XML, which an SDK reads.
    try:
        ec2.create_security_group(GroupName="g", Description="ports <80> & more")
        raise AssertionError("CreateSecurityGroup with a description EC2 refuses passed")
    except ClientError as e:
        assert e.response["Error"]["Code"] == "InvalidParameterValue", e.response
        assert "<80> & more" in e.response["Error"]["Message"], e.response
    refused(m, "CreateSecurityGroup", {**group, "GroupDescription": "café"}, "InvalidParameterValue")
    passes(m, "CreateSecurityGroup", group)
    rule = {"GroupName": "amiprobe-r1", "IpPermissions.1.IpProtocol": "tcp", "IpPermissions.1.FromPort": "80",
            "IpPermissions.1.ToPort": "80", "IpPermissions.1.IpRanges.1.CidrIp": "203.0.113.7/32"}
    refused(m, "AuthorizeSecurityGroupIngress", {**rule, "IpPermissions.1.IpRanges.1.Description": "from <here>"}, "InvalidParameterValue")
    refused(m, "RunInstances", {**RUN, "ClientToken": "t" * 65}, "InvalidParameterValue")
    refused(m, "CreateKeyPair", {"KeyName": "k" * 256}, "InvalidParameterValue")
    refused(m, "CreateKeyPair", {"KeyName": "clé"}, "InvalidParameterValue")


CHECKS = [
    ("rules: a well-formed request passes", check_well_formed),
    ("rules: the API model", check_model),
    ("rules: tag sets", check_tag_sets),
    ("rules: network interfaces", check_network_interfaces),
    ("rules: metadata options", check_metadata_options),
    ("rules: ebs volumes", check_ebs),
    ("rules: ids with MaxResults", check_paging),
    ("rules: values per call", check_value_counts),
    ("rules: instance counts and user data", check_instance_counts),
    ("rules: key types", check_key_types),
    ("rules: documented text", check_documented_text),
]
