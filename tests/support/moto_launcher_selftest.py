"""Self-test of moto_launcher.py: `python moto_launcher.py --self-test` (exit status 0 when all pass).

Starts the launcher as the Rust tests do (a child process on free 127.0.0.1 ports), then drives each
control-API feature with boto3 (dummy credentials, no SDK retries) and checks what EC2 answers.
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

AMI = "ami-03cf127a"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Launcher:
    def __init__(self, path):
        self.port, self.control_port = free_port(), free_port()
        env = dict(os.environ, MOTO_ENABLE_AMI_VALIDATION="true", MOTO_ENABLE_KEYPAIR_VALIDATION="true")
        args = [sys.executable, path, "--port", str(self.port), "--control-port", str(self.control_port)]
        self.child = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.get("/ready")
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/moto-api/").read()
                break
            except OSError:
                assert time.monotonic() < deadline, "launcher did not start"
                time.sleep(0.1)

    def get(self, path):
        return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{self.control_port}{path}").read())

    def post(self, path, body=None):
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.control_port}{path}", data=json.dumps(body or {}).encode(), method="POST"
        )
        return json.loads(urllib.request.urlopen(request).read())

    def client(self, key="testing"):
        return boto3.client(
            "ec2",
            endpoint_url=f"http://127.0.0.1:{self.port}",
            region_name="eu-west-1",
            aws_access_key_id=key,
            aws_secret_access_key="testing",
            config=Config(retries={"total_max_attempts": 1}),
        )

    def stop(self):
        self.child.kill()
        self.child.wait()


def error_of(call, *args, **kwargs):
    """(code, HTTP status, message) of a call that must fail."""
    try:
        call(*args, **kwargs)
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Message"]
    raise AssertionError(f"{call.__name__} succeeded")


def run_one(ec2, **extra):
    out = ec2.run_instances(ImageId=AMI, InstanceType="t3.micro", MinCount=1, MaxCount=1, **extra)
    return out["Instances"][0]["InstanceId"]


def state(ec2, instance_id):
    out = ec2.describe_instances(InstanceIds=[instance_id])
    return out["Reservations"][0]["Instances"][0]["State"]["Name"]


def key_names(ec2):
    return {k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]}


def listed(ec2, instance_id):
    filters = [{"Name": "instance-type", "Values": ["t3.micro"]}]
    return any(
        i["InstanceId"] == instance_id
        for r in ec2.describe_instances(Filters=filters)["Reservations"]
        for i in r["Instances"]
    )


def check_latency(m, ec2):
    ec2.describe_key_pairs()  # the client's first call sets it up: not part of the timings
    m.post("/latency", {"DescribeKeyPairs": 0.5, "*": 0.0, "jitter": 0.0})
    started = time.monotonic()
    threads = [threading.Thread(target=ec2.describe_key_pairs) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 1.0, f"4 parallel slow calls took {elapsed:.2f}s: sleeps must not block each other"
    started = time.monotonic()
    ec2.describe_instances()
    assert time.monotonic() - started < 0.3, "an action not named must follow `*`"
    m.post("/latency", {"*": 0.2, "jitter": 0.5})
    started = time.monotonic()
    ec2.describe_instances()
    assert 0.1 <= time.monotonic() - started < 0.45, "`*` with jitter"
    started = time.monotonic()
    m.client("oracle").describe_instances()
    assert time.monotonic() - started < 0.1, "the oracle waits for nothing"
    m.post("/latency", {})


def check_consistency(m, ec2):
    oracle = m.client("oracle")
    m.post("/consistency", {"key_pair": 1.0, "instance": 1.0})
    ec2.create_key_pair(KeyName="k1")
    code, status, message = error_of(ec2.describe_key_pairs, KeyNames=["k1"])
    assert (code, status, message) == ("InvalidKeyPair.NotFound", 400, "The key pair 'k1' does not exist"), message
    assert "k1" not in key_names(ec2) and "k1" in key_names(oracle)
    assert error_of(run_one, ec2, KeyName="k1")[0] == "InvalidKeyPair.NotFound"
    assert error_of(ec2.delete_key_pair, KeyName="k1")[0] == "InvalidKeyPair.NotFound"
    time.sleep(1.05)
    assert "k1" in key_names(ec2)
    instance_id = run_one(ec2, KeyName="k1")
    for call, kwargs in [
        (ec2.terminate_instances, {"InstanceIds": [instance_id]}),
        (ec2.get_console_output, {"InstanceId": instance_id}),
        (ec2.get_console_screenshot, {"InstanceId": instance_id}),
        (ec2.describe_instances, {"InstanceIds": [instance_id]}),
        (ec2.describe_instance_status, {"InstanceIds": [instance_id]}),
        (ec2.create_tags, {"Resources": [instance_id], "Tags": [{"Key": "a", "Value": "b"}]}),
    ]:
        code, status, message = error_of(call, **kwargs)
        assert (code, status) == ("InvalidInstanceID.NotFound", 400), (call.__name__, code, status)
        assert message == f"The instance ID '{instance_id}' does not exist", message
    assert not listed(ec2, instance_id) and listed(oracle, instance_id)
    other = run_one(ec2)
    message = error_of(ec2.terminate_instances, InstanceIds=[instance_id, other])[2]
    assert message == f"The instance IDs '{instance_id}, {other}' do not exist", message
    time.sleep(1.05)
    assert listed(ec2, instance_id)
    ec2.terminate_instances(InstanceIds=[instance_id])
    ec2.terminate_instances(InstanceIds=[other])
    ec2.delete_key_pair(KeyName="k1")
    assert "k1" not in key_names(oracle)
    calls = m.get("/calls")
    assert calls["consistency:TerminateInstances"] == 2 and calls["consistency:DescribeKeyPairs"] == 1, calls
    m.post("/consistency", {})


def check_delete_missing_key_pair(ec2):
    # Real EC2 answers success for a key pair that does not exist; moto does too.
    ec2.delete_key_pair(KeyName="never-created")


def chaos_pattern(m, ec2, seed):
    m.post("/chaos", {"rate": 0.5, "seed": seed, "actions": ["DescribeRegions"]})
    pattern = []
    for _ in range(20):
        try:
            ec2.describe_regions()
            pattern.append("ok")
        except ClientError as e:
            pattern.append(e.response["Error"]["Code"])
    return pattern


def check_chaos(m, ec2):
    oracle = m.client("oracle")
    first = chaos_pattern(m, ec2, 42)
    assert first == chaos_pattern(m, ec2, 42), "the same seed must fail the same calls"
    assert first != chaos_pattern(m, ec2, 7) and "ok" in first and "InternalError" in first + chaos_pattern(m, ec2, 7)
    ec2.describe_instances()  # not in `actions`
    # Before: the call fails and nothing happened.
    m.post("/chaos", {"rate": 1.0, "seed": 1, "after_rate": 0.0, "codes": [["Unavailable", 503]]})
    assert error_of(ec2.create_key_pair, KeyName="lost")[:2] == ("Unavailable", 503)
    assert "lost" not in key_names(oracle)
    # After: the call fails and it happened anyway (a lost response).
    m.post("/chaos", {"rate": 1.0, "seed": 1, "after_rate": 1.0, "codes": [["InternalError", 500]]})
    assert error_of(ec2.create_key_pair, KeyName="lost")[:2] == ("InternalError", 500)
    assert "lost" in key_names(oracle)
    # A RunInstances response lost: the retry with the same ClientToken gets the same instance.
    assert error_of(run_one, ec2, ClientToken="tok-1")[0] == "InternalError"
    m.post("/chaos", {"rate": 0})
    instance_id = run_one(ec2, ClientToken="tok-1")
    assert run_one(ec2, ClientToken="tok-1") == instance_id
    assert sum(listed(oracle, i) for i in [instance_id]) == 1
    reservations = oracle.describe_instances()["Reservations"]
    assert sum(len(r["Instances"]) for r in reservations) == 1, "one ClientToken, one instance"
    assert error_of(run_one, ec2, ClientToken="tok-1", KeyName="lost")[0] == "IdempotentParameterMismatch"
    calls = m.get("/calls")
    assert calls["chaos:CreateKeyPair"] == 2 and calls["chaos:RunInstances"] == 1, calls
    ec2.terminate_instances(InstanceIds=[instance_id])
    ec2.delete_key_pair(KeyName="lost")


def check_shutting_down(m, ec2):
    m.post("/shutting_down", {"seconds": 1.0})
    instance_id = run_one(ec2)
    out = ec2.terminate_instances(InstanceIds=[instance_id])
    assert out["TerminatingInstances"][0]["CurrentState"]["Name"] == "shutting-down"
    assert state(ec2, instance_id) == "shutting-down"
    ec2.terminate_instances(InstanceIds=[instance_id])  # again: still the first deadline
    time.sleep(1.05)
    assert state(ec2, instance_id) == "terminated"
    ec2.terminate_instances(InstanceIds=[instance_id])
    assert state(ec2, instance_id) == "terminated", "a terminated instance stays terminated"
    m.post("/shutting_down", {"seconds": 0})


def addresses(instance):
    return instance.get("PublicIpAddress"), instance.get("PrivateIpAddress")


def http_get(address, port):
    """The status and body of GET / there; None when nothing listens (connection refused)."""
    try:
        with socket.create_connection((address, port), timeout=2) as s:
            s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
            answer = b""
            while chunk := s.recv(4096):
                answer += chunk
    except ConnectionRefusedError:
        return None
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def wait_until(check, seconds, what):
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def check_timing(m, ec2):
    """Each instance: pending for its boot time, then running; its service on its own address once its
    service time is over too; shutting-down for its own time after TerminateInstances; /timeline."""
    port = free_port()
    m.post("/timing", {"boot_s": 1.0, "service_s": 0.5, "shutting_down_s": 1.0, "port": port})
    started = time.monotonic()
    out = ec2.run_instances(ImageId=AMI, InstanceType="t3.micro", MinCount=2, MaxCount=2)["Instances"]
    first, second = (i["InstanceId"] for i in out)
    assert all(i["State"]["Name"] == "pending" for i in out), out
    launched = [addresses(i) for i in out]
    assert all(public == private for public, private in launched), launched
    ips = [public for public, _ in launched]
    assert len(set(ips)) == 2 and "127.0.0.1" not in ips and all(ip.startswith("127.") for ip in ips), ips
    described = ec2.describe_instances(InstanceIds=[first])["Reservations"][0]["Instances"][0]
    assert addresses(described) == launched[0], (addresses(described), launched[0])
    assert state(ec2, first) == "pending" and http_get(ips[0], port) is None, "booting: pending, refused"
    wait_until(lambda: state(ec2, first) == "running", 1.5, "running after its boot time")
    assert time.monotonic() - started >= 0.95, "running before its boot time"
    if time.monotonic() - started < 1.4:  # not checkable on a machine this slow
        assert http_get(ips[0], port) is None, "running, its service not yet up"
    wait_until(lambda: http_get(ips[0], port) is not None, 1.5, "its service answers after its service time")
    assert http_get(ips[0], port) == (200, "ok") and http_get(ips[1], port) == (200, "ok")
    ec2.terminate_instances(InstanceIds=[first])
    assert state(ec2, first) == "shutting-down" and state(ec2, second) == "running"
    wait_until(lambda: http_get(ips[0], port) is None, 1.0, "a terminated instance's service stops")
    assert http_get(ips[1], port) == (200, "ok"), "the other one's stays"
    wait_until(lambda: state(ec2, first) == "terminated", 1.5, "terminated after its own shutting-down time")
    line = m.get("/timeline")
    one, two = line[first], line[second]
    assert one["address"] == ips[0] and one["port"] == port, one
    assert abs(one["running_at"] - one["launched"] - 1.0) < 0.002, one  # each rounded to the millisecond
    assert abs(one["service_at"] - one["running_at"] - 0.5) < 0.002, one
    assert (one["boot_s"], one["service_s"], one["shutting_down_s"]) == (1.0, 0.5, 1.0), one
    assert 0.99 <= one["terminated_at"] - one["terminate_requested_at"] <= 1.01, one
    assert two["terminate_requested_at"] is None and two["terminated_at"] is None, two
    # Ranges are drawn per instance from the seeded RNG: another instance, another time; the same seed
    # again, the same times. A pending instance terminated never runs, and never listens.
    m.post("/timing", {"boot_s": [5, 10], "service_s": [1, 3], "seed": 7, "port": port})
    ids = [run_one(ec2) for _ in range(3)]
    m.post("/timing", {"boot_s": [5, 10], "service_s": [1, 3], "seed": 7, "port": port})
    again = run_one(ec2)
    line = m.get("/timeline")
    boots = [line[i]["boot_s"] for i in ids]
    assert len(set(boots)) == 3 and all(5 <= b <= 10 for b in boots), boots
    assert line[again]["boot_s"] == boots[0] and line[again]["service_s"] == line[ids[0]]["service_s"]
    ec2.terminate_instances(InstanceIds=ids)
    assert state(ec2, ids[0]) == "terminated", "no shutting_down_s: /shutting_down's 0 seconds"
    assert m.get("/timeline")[ids[0]]["running_at"] is None, "terminated while pending: never ran"
    # Off: moto's own instances again (running at once, moto's addresses).
    m.post("/timing", {})
    plain = ec2.run_instances(ImageId=AMI, InstanceType="t3.micro", MinCount=1, MaxCount=1)["Instances"][0]
    assert plain["InstanceId"] not in m.get("/timeline") and not plain["PrivateIpAddress"].startswith("127.")


def check_throttle_classes(m, ec2):
    """EC2's request limits per API (sized by class), counted per action, alongside /timing."""
    m.post("/timing", {"boot_s": 0.5, "service_s": 0.0, "port": free_port()})
    m.post("/throttle", {"enabled": True})
    codes = [error_of(run_one, ec2)[0] if i >= 5 else run_one(ec2) and "ok" for i in range(7)]
    assert codes == ["ok"] * 5 + ["RequestLimitExceeded"] * 2, codes
    time.sleep(0.55)  # 2 a second: one more token
    instance_id = run_one(ec2)
    assert len(m.get("/timeline")) == 6 and state(ec2, instance_id) == "pending"
    # Another API has a bucket of its own: unfiltered DescribeInstances run dry after 50 at once (and 10
    # a second since), while key pairs (another API) still pass.
    for sent in range(1, 201):
        try:
            ec2.describe_instances()
        except ClientError as e:
            assert e.response["Error"]["Code"] == "RequestLimitExceeded", e
            break
    assert 50 < sent < 200, f"unfiltered DescribeInstances refused after {sent} calls"
    ec2.describe_key_pairs()
    calls = m.get("/calls")
    assert calls["throttled:RunInstances"] == 2, calls
    assert calls["throttled"] == 2 + calls["throttled:DescribeInstances"], calls


def check_status(m, ec2):
    """moto answers ok for running instances; /status makes a check impaired, for all or one."""
    first, second = run_one(ec2), run_one(ec2)

    def checks(instance_id):
        out = ec2.describe_instance_status(InstanceIds=[instance_id], IncludeAllInstances=True)
        s = out["InstanceStatuses"][0]
        return s["SystemStatus"]["Status"], s["InstanceStatus"]["Status"], s["InstanceStatus"]["Details"][0]["Status"]

    assert checks(first) == ("ok", "ok", "passed"), checks(first)
    m.post("/status", {"instance_id": first, "instance": "impaired"})
    assert checks(first) == ("ok", "impaired", "failed"), checks(first)
    assert checks(second) == ("ok", "ok", "passed"), "only the named instance"
    m.post("/status", {"system": "impaired"})
    assert checks(second)[0] == "impaired" and checks(first)[:2] == ("impaired", "impaired")
    ec2.terminate_instances(InstanceIds=[first, second])
    out = ec2.describe_instance_status(InstanceIds=[first], IncludeAllInstances=True)
    assert out["InstanceStatuses"][0]["SystemStatus"]["Status"] == "not-applicable", "only while running"


def check_group_dependency(m, ec2):
    m.post("/shutting_down", {"seconds": 1.0})
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    group = ec2.create_security_group(GroupName="probes", Description="probes", VpcId=vpc)["GroupId"]
    instance_id = run_one(ec2, SecurityGroupIds=[group])
    assert error_of(ec2.delete_security_group, GroupId=group)[0] == "DependencyViolation", "running"
    ec2.terminate_instances(InstanceIds=[instance_id])
    assert error_of(ec2.delete_security_group, GroupId=group)[0] == "DependencyViolation", "shutting down"
    time.sleep(1.05)
    ec2.delete_security_group(GroupId=group)
    assert m.get("/calls")["dependency:DeleteSecurityGroup"] == 2
    m.post("/shutting_down", {"seconds": 0})


def check_faults_counted(m, ec2):
    m.post("/fault", {"action": "DescribeRegions", "code": "InternalError", "status": 500})
    assert error_of(ec2.describe_regions)[:2] == ("InternalError", 500)
    assert m.get("/calls")["fault:DescribeRegions"] == 1


def check_existing(m, ec2):
    """The older endpoints still work: /pending, /console, /throttle, screenshots."""
    m.post("/pending", {"describes": 2})
    m.post("/console", {"text": "hello login: "})
    instance_id = run_one(ec2)
    assert [state(ec2, instance_id) for _ in range(3)] == ["pending", "pending", "running"]
    output = ec2.get_console_output(InstanceId=instance_id)["Output"]
    assert output == "hello login: ", output
    assert ec2.get_console_screenshot(InstanceId=instance_id)["ImageData"].startswith("/9j/"), "a JPEG"
    m.post("/throttle", {"enabled": True})
    codes = [error_of(run_one, ec2)[0] if i >= 5 else run_one(ec2) and "ok" for i in range(6)]
    assert codes == ["ok"] * 5 + ["RequestLimitExceeded"], codes


def check_requests(m, ec2):
    groups = [ec2.create_security_group(GroupName=f"g{i}", Description="d")["GroupId"] for i in range(2)]
    first = run_one(ec2, SecurityGroupIds=groups, ClientToken="req-1")
    ec2.describe_instances(InstanceIds=[first])
    run_one(ec2, UserData="hello")  # boto3 sends it base64-encoded
    runs = m.get("/requests?action=RunInstances")
    assert len(runs) == 2, runs
    assert runs[0]["ImageId"] == AMI and runs[0]["InstanceType"] == "t3.micro" and runs[0]["MinCount"] == "1", runs[0]
    assert [runs[0]["SecurityGroupId.1"], runs[0]["SecurityGroupId.2"]] == groups, runs[0]
    assert runs[0]["ClientToken"] == "req-1" and "UserData" not in runs[0], runs[0]
    assert runs[1]["UserData"] == "aGVsbG8=" and "SecurityGroupId.1" not in runs[1], runs[1]
    everything = [r["Action"] for r in m.get("/requests")]
    assert everything == ["CreateSecurityGroup"] * 2 + ["RunInstances", "DescribeInstances", "RunInstances"], everything
    # A call that failed was sent all the same: it is recorded too.
    m.post("/fault", {"action": "RunInstances", "code": "InternalError", "status": 500})
    error_of(run_one, ec2, KeyName="never-made")
    assert m.get("/requests?action=RunInstances")[-1]["KeyName"] == "never-made"
    m.post("/reset")
    assert m.get("/requests") == []


def check_launch_volumes(m, ec2):
    mappings = [
        {"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 30, "VolumeType": "io2", "Iops": 3000}},
        {"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 100, "VolumeType": "gp3", "Iops": 4000, "Throughput": 250}},
        {"DeviceName": "/dev/sdg", "Ebs": {"VolumeSize": 10}},
    ]
    instance = run_one(ec2, BlockDeviceMappings=mappings)
    devices = ec2.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]["BlockDeviceMappings"]
    ids = {d["DeviceName"]: d["Ebs"]["VolumeId"] for d in devices}
    volumes = {v["VolumeId"]: v for v in ec2.describe_volumes(VolumeIds=list(ids.values()))["Volumes"]}
    got = {name: (volumes[i]["Size"], volumes[i]["VolumeType"], volumes[i].get("Iops"), volumes[i].get("Throughput")) for name, i in ids.items()}
    assert got["/dev/sda1"] == (30, "io2", 3000, None), got
    assert got["/dev/sdf"] == (100, "gp3", 4000, 250), got
    assert got["/dev/sdg"][:2] == (10, "gp2"), got
    # Still refused as on EC2: io2 without IOPS.
    code, _, _ = error_of(run_one, ec2, BlockDeviceMappings=[{"DeviceName": "/dev/sdh", "Ebs": {"VolumeSize": 10, "VolumeType": "io2"}}])
    assert code == "InvalidParameterDependency", code


def image_of(ec2, image_id):
    return ec2.describe_images(ImageIds=[image_id])["Images"][0]


def check_images(m, ec2):
    arm = m.post("/image", {"architecture": "arm64", "boot_mode": "uefi", "ena_support": True, "root_device_name": "/dev/sda1"})["image_id"]
    image = image_of(ec2, arm)
    got = {k: image.get(k) for k in ("Architecture", "BootMode", "EnaSupport", "RootDeviceName", "State")}
    assert got == {"Architecture": "arm64", "BootMode": "uefi", "EnaSupport": True, "RootDeviceName": "/dev/sda1", "State": "available"}, got
    plain = image_of(ec2, m.post("/image", {})["image_id"])
    assert plain["Architecture"] == "x86_64" and plain["RootDeviceName"] == "/dev/xvda", plain
    assert "BootMode" not in plain and not plain.get("EnaSupport"), plain
    pending = image_of(ec2, m.post("/image", {"state": "pending", "boot_mode": "legacy-bios"})["image_id"])
    assert pending["State"] == "pending" and pending["BootMode"] == "legacy-bios", pending
    builtin = image_of(ec2, AMI)
    assert "BootMode" not in builtin and builtin["EnaSupport"] is True, builtin
    # One unknown id fails the whole call, as on EC2, naming only the unknown one; a filter leaves it out.
    missing = "ami-0000000000000dead"
    code, status, message = error_of(ec2.describe_images, ImageIds=[AMI, missing, arm])
    assert (code, status) == ("InvalidAMIID.NotFound", 400) and missing in message and AMI not in message, message
    found = ec2.describe_images(Filters=[{"Name": "image-id", "Values": [AMI, missing, arm]}])["Images"]
    assert sorted(i["ImageId"] for i in found) == sorted([AMI, arm]), found


def check_instance_type_data(ec2):
    """What the preflight tests take from moto's own data: checked here so that a moto upgrade that
    changes it fails here, by name."""
    types = {
        t["InstanceType"]: t
        for t in ec2.describe_instance_types(InstanceTypes=["t2.micro", "t3.micro", "t4g.micro", "h1.2xlarge"])[
            "InstanceTypes"
        ]
    }
    t2, t3, t4g = types["t2.micro"], types["t3.micro"], types["t4g.micro"]
    assert t2["SupportedBootModes"] == ["legacy-bios"] and t2["NetworkInfo"]["EnaSupport"] == "unsupported", t2
    assert "arm64" not in t2["ProcessorInfo"]["SupportedArchitectures"]
    assert t3["ProcessorInfo"]["SupportedArchitectures"] == ["x86_64"] and t3["NetworkInfo"]["EnaSupport"] == "required"
    assert sorted(t3["SupportedBootModes"]) == ["legacy-bios", "uefi"], t3["SupportedBootModes"]
    assert t4g["ProcessorInfo"]["SupportedArchitectures"] == ["arm64"], t4g["ProcessorInfo"]
    offerings = ec2.describe_instance_type_offerings(
        LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": ["h1.2xlarge", "t3.micro"]}]
    )["InstanceTypeOfferings"]
    zones = {t: sorted(o["Location"] for o in offerings if o["InstanceType"] == t) for t in ("h1.2xlarge", "t3.micro")}
    assert zones == {"h1.2xlarge": ["eu-west-1a", "eu-west-1c"], "t3.micro": ["eu-west-1a", "eu-west-1b", "eu-west-1c"]}, zones


def check_reset(m, ec2):
    m.post("/latency", {"*": 0.5})
    m.post("/consistency", {"key_pair": 5.0, "instance": 5.0})
    m.post("/chaos", {"rate": 1.0})
    m.post("/shutting_down", {"seconds": 5.0})
    m.post("/reset")
    started = time.monotonic()
    ec2.create_key_pair(KeyName="after-reset")
    assert "after-reset" in key_names(ec2)
    instance_id = run_one(ec2)
    ec2.terminate_instances(InstanceIds=[instance_id])
    assert state(ec2, instance_id) == "terminated"
    assert time.monotonic() - started < 1.0, "latency survived the reset"
    assert "DescribeRegions" not in m.get("/calls")


CHECKS = [
    ("latency", check_latency),
    ("consistency", check_consistency),
    ("delete missing key pair", lambda m, ec2: check_delete_missing_key_pair(ec2)),
    ("chaos", check_chaos),
    ("shutting_down", check_shutting_down),
    ("timing", check_timing),
    ("throttle classes", check_throttle_classes),
    ("status checks", check_status),
    ("security group in use", check_group_dependency),
    ("faults counted", check_faults_counted),
    ("existing endpoints", check_existing),
    ("requests recorded", check_requests),
    ("images", check_images),
    ("launch volumes", check_launch_volumes),
    ("instance type data", lambda m, ec2: check_instance_type_data(ec2)),
    ("reset", check_reset),
]


def main(launcher_path):
    m = Launcher(launcher_path)
    failed = 0
    try:
        for name, check in CHECKS:
            m.post("/reset")
            try:
                check(m, m.client())
                print(f"ok    {name}")
            except Exception as e:  # noqa: BLE001 - report every check, then fail
                failed += 1
                print(f"FAIL  {name}: {type(e).__name__}: {e}")
                traceback.print_exc()
    finally:
        m.stop()
    print("self-test passed" if not failed else f"self-test: {failed} failed")
    return 1 if failed else 0
