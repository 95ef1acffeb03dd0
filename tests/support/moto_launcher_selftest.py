"""Self-test of moto_launcher.py: `python moto_launcher.py --self-test` (exit status 0 when all pass).

Starts the launcher as the Rust tests do (a child process on free 127.0.0.1 ports), then drives each
control-API feature with boto3 (dummy credentials, no SDK retries) and checks what EC2 answers.
"""

import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

import ec2_rules_selftest  # next to this file
import iam_policy_selftest  # next to this file
import ssm_run_selftest  # next to this file

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


def connect_outcome(address, port, timeout):
    """"refused", "timeout" or "connected": what a TCP connect there meets within `timeout`."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return "connected"
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "timeout"


def post_error(m, path, body):
    """(HTTP status, JSON answer) of a control call that must fail."""
    try:
        m.post(path, body)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
    raise AssertionError(f"POST {path} {body} succeeded")


def loopback_only():
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def check_drop_until_service(m, ec2):
    """drop_until_service: a booting instance's address answers nothing (a connect times out, its SYN
    retransmitted by this kernel), then a connect stuck meanwhile gets through at its first
    retransmission after the service time, a fresh one at once; first_answered_at; terminate and /reset stop the drop; and
    the option is refused in a namespace that is not loopback-only."""
    port = free_port()
    body = {"boot_s": 0.5, "service_s": 1.0, "port": port, "drop_until_service": True}
    if not loopback_only():
        # Not in the tests' namespace: the option must be refused, and nothing more can be checked.
        status, answer = post_error(m, "/timing", body)
        assert status == 400 and "loopback-only" in answer["error"], (status, answer)
        print("      (drop_until_service: only its refusal checked, outside a loopback-only namespace)")
        return
    m.post("/timing", body)
    out = ec2.run_instances(ImageId=AMI, InstanceType="t3.micro", MinCount=2, MaxCount=2)["Instances"]
    started = time.monotonic()
    (first, ip), (second, other_ip) = ((i["InstanceId"], i["PublicIpAddress"]) for i in out)
    # A connect begun now sends its SYN at once (dropped), again 1 s later (still dropped: the service
    # time is 1.5 s after the launch), and again 2 s after the start (Linux since 6.5: the first 4 SYN
    # retransmissions 1 s apart, net.ipv4.tcp_syn_linear_timeouts) or 3 s (before: 1 s, then doubling),
    # which the service answers.
    stuck = {}

    def connect_early():
        with socket.create_connection((ip, port), timeout=8) as s:
            stuck["connected"] = time.monotonic() - started
            s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
            stuck["answer"] = s.recv(4096)

    early = threading.Thread(target=connect_early)
    early.start()
    assert connect_outcome(ip, port, 0.3) == "timeout", "booting: no answer at all, not refused"
    assert connect_outcome(other_ip, port, 0.3) == "timeout", "the other one's address too"
    ec2.terminate_instances(InstanceIds=[second])
    wait_until(lambda: connect_outcome(other_ip, port, 0.3) == "refused", 1.0, "terminated: refused, no longer dropped")
    # Fresh connects, each its own first SYN: dropped until the service time, then straight through.
    wait_until(lambda: connect_outcome(ip, port, 0.2) == "connected", 2.5, "through once its service time is over")
    assert time.monotonic() - started >= 1.4, "through before its service time"
    assert http_get(ip, port) == (200, "ok")
    early.join()
    assert stuck["answer"].startswith(b"HTTP/1.0 200"), stuck
    # Not at the service time (1.5 s), nor at the dropped retransmission (1 s): at the next one (2 or 3 s).
    assert 1.9 <= stuck["connected"] < 3.6, f"the early connect went through after {stuck['connected']:.2f}s"
    line = m.get("/timeline")
    one, two = line[first], line[second]
    assert one["drop_until_service"] is True and one["first_answered_at"] is not None, one
    assert 0 <= one["first_answered_at"] - one["service_at"] < 0.5, "the later GET answered first, at once"
    assert two["first_answered_at"] is None and two["service_at"] is None, two
    # /reset lets every address go: a booting instance's address refuses again.
    m.post("/timing", dict(body, boot_s=30.0))
    booting = ec2.run_instances(ImageId=AMI, InstanceType="t3.micro", MinCount=1, MaxCount=1)["Instances"][0]
    assert connect_outcome(booting["PublicIpAddress"], port, 0.3) == "timeout", "dropped while booting"
    m.post("/reset")
    assert connect_outcome(booting["PublicIpAddress"], port, 0.3) == "refused", "the reset flushes the drops"
    # Without the option: refused while booting, as ever, and the timeline says which it was.
    m.post("/timing", {"boot_s": 30.0, "port": port})
    plain = run_one(ec2)
    assert m.get("/timeline")[plain]["drop_until_service"] is False
    # Another interface in this namespace (a veth pair, both ends here, gone with the namespace): no
    # longer loopback-only, so refused.
    subprocess.run(["ip", "link", "add", "amiprobe-v0", "type", "veth", "peer", "name", "amiprobe-v1"], check=True)
    try:
        status, answer = post_error(m, "/timing", body)
    finally:
        subprocess.run(["ip", "link", "del", "amiprobe-v0"], check=True)
    assert status == 400 and "loopback-only" in answer["error"] and "amiprobe-v0" in answer["error"], (status, answer)
    m.post("/timing", body)  # loopback-only again: accepted again


# --- Windows passwords, RDP, reboots -----------------------------------------------------------------


def windows_image(m):
    return m.post("/image", {"platform": "windows", "name": "Windows_Server-2022-English-Full-Base"})["image_id"]


def run_on(ec2, image_id, **extra):
    out = ec2.run_instances(ImageId=image_id, InstanceType="t3.micro", MinCount=1, MaxCount=1, **extra)
    return out["Instances"][0]


def password_data(ec2, instance_id):
    return ec2.get_password_data(InstanceId=instance_id)["PasswordData"]


def decrypt(private_key, data):
    """What a client does with PasswordData: strip EC2's CR LF pairs, base64-decode, RSA PKCS#1 v1.5."""
    return private_key.decrypt(base64.b64decode(data.strip()), padding.PKCS1v15()).decode()


def check_windows_password(m, ec2):
    """platform windows on the image and its instances; GetPasswordData: "" until ready, then the password
    encrypted to the key pair (CreateKeyPair's or an imported ssh-rsa key), "" for the rest."""
    win = windows_image(m)
    assert image_of(ec2, win).get("Platform") == "windows", image_of(ec2, win)
    assert image_of(ec2, AMI).get("Platform") == "windows", "moto's built-in AMI (the other checks') is Windows"
    linux_image = m.post("/image", {})["image_id"]
    assert "Platform" not in image_of(ec2, linux_image), "an /image without platform is Linux"
    # A key pair imported in OpenSSH form, as amiprobe does; a fixed password, ready 1 s after running.
    imported = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    openssh = imported.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    ec2.import_key_pair(KeyName="imported", PublicKeyMaterial=openssh)
    m.post("/windows", {"password_s": 1.0, "password": "Fixed-Pa55word;"})
    launched = run_on(ec2, win, KeyName="imported")
    started = time.monotonic()
    first = launched["InstanceId"]
    assert launched.get("Platform") == "windows", launched
    described = ec2.describe_instances(InstanceIds=[first])["Reservations"][0]["Instances"][0]
    assert described.get("Platform") == "windows", described
    if time.monotonic() - started < 0.8:  # not checkable on a machine this slow
        assert password_data(ec2, first) == "", "not ready before password_s"
    wait_until(lambda: password_data(ec2, first) != "", 2.0, "ready password_s after running")
    assert time.monotonic() - started >= 0.95, "ready before password_s"
    data = password_data(ec2, first)
    assert data.startswith("\r\n") and data.endswith("\r\n") and "\r\n" not in data[2:-2], repr(data[:8])
    assert decrypt(imported, data) == "Fixed-Pa55word;"
    assert m.get("/windows") == {first: "Fixed-Pa55word;"}
    out = ec2.get_password_data(InstanceId=first)
    assert out["InstanceId"] == first and out["Timestamp"].year >= 2024, out
    # CreateKeyPair's own key; {}: the defaults (ready at once, a random password per instance). The
    # key pair deleted after the launch changes nothing: EC2Launch reads the key given at launch.
    created = ec2.create_key_pair(KeyName="created")
    private = serialization.load_pem_private_key(created["KeyMaterial"].encode(), None)
    m.post("/windows", {})
    second, third = (run_on(ec2, win, KeyName="created")["InstanceId"] for _ in range(2))
    ec2.delete_key_pair(KeyName="created")
    passwords = m.get("/windows")
    assert decrypt(private, password_data(ec2, second)) == passwords[second], passwords
    assert len(passwords[second]) == 32 and passwords[second] != passwords[third], passwords
    # wrong_key: encrypted to some other RSA key, so the client's decryption fails.
    m.post("/windows", {"wrong_key": True})
    wrong = run_on(ec2, win, KeyName="imported")["InstanceId"]
    try:
        decrypt(imported, password_data(ec2, wrong))
        raise AssertionError("wrong_key: decrypted with the instance's key pair")
    except ValueError:
        pass
    assert wrong in m.get("/windows")
    # Always "": a Linux instance, a Windows one without a key pair or with an ed25519 key pair.
    m.post("/windows", {})
    linux = run_on(ec2, linux_image, KeyName="imported")["InstanceId"]
    keyless = run_on(ec2, win)["InstanceId"]
    edkey = ed25519.Ed25519PrivateKey.generate().public_key()
    openssh = edkey.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    ec2.import_key_pair(KeyName="ed", PublicKeyMaterial=openssh)
    # EC2 refuses an ed25519 key pair on a Windows image (ec2_rules); the oracle, exempt, launches one.
    assert error_of(run_on, ec2, win, KeyName="ed")[:2] == ("InvalidParameterCombination", 400)
    ed = run_on(m.client("oracle"), win, KeyName="ed")["InstanceId"]
    time.sleep(0.1)
    assert [password_data(ec2, i) for i in (linux, keyless, ed)] == ["", "", ""]
    assert not {linux, keyless, ed} & set(m.get("/windows"))
    code, status, _ = error_of(ec2.get_password_data, InstanceId="i-0000000000000dead")
    assert (code, status) == ("InvalidInstanceID.NotFound", 400), code


def check_windows_password_timed(m, ec2):
    """Under /timing the password clock starts at the instance's boot time; a pending instance terminated
    never gets one. Under /pending, from its first `running` describe."""
    win = windows_image(m)
    created = ec2.create_key_pair(KeyName="timed")
    private = serialization.load_pem_private_key(created["KeyMaterial"].encode(), None)
    m.post("/timing", {"boot_s": 0.6, "service_s": 0.0, "port": free_port()})
    m.post("/windows", {"password_s": 0.4})
    started = time.monotonic()
    instance_id = run_on(ec2, win, KeyName="timed")["InstanceId"]
    doomed = run_on(ec2, win, KeyName="timed")["InstanceId"]
    ec2.terminate_instances(InstanceIds=[doomed])
    wait_until(lambda: password_data(ec2, instance_id) != "", 2.5, "ready boot_s + password_s after launch")
    assert time.monotonic() - started >= 0.95, "ready before boot_s + password_s"
    assert decrypt(private, password_data(ec2, instance_id)) == m.get("/windows")[instance_id]
    assert password_data(ec2, doomed) == "", "terminated while pending: never ready"
    m.post("/timing", {})
    m.post("/windows", {})
    m.post("/pending", {"describes": 2})
    held = run_on(ec2, win, KeyName="timed")["InstanceId"]
    assert state(ec2, held) == "pending" and password_data(ec2, held) == "", "pending: no password yet"
    assert state(ec2, held) == "pending" and state(ec2, held) == "running"
    assert password_data(ec2, held) != "", "running (and password_s 0): ready"


def x224_request(cookie=b"", requested=None):
    """A client's TPKT + X.224 Connection Request, with an RDP_NEG_REQ when `requested` is given."""
    body = bytes([0xE0, 0, 0, 0, 0, 0]) + cookie
    if requested is not None:
        body += bytes([0x01, 0x00, 0x08, 0x00]) + requested.to_bytes(4, "little")
    pdu = bytes([len(body)]) + body
    return bytes([3, 0]) + (len(pdu) + 4).to_bytes(2, "big") + pdu


def listening(address, port):
    """Whether a TCP connection there is accepted (closed at once, unused)."""
    try:
        socket.create_connection((address, port), timeout=2).close()
        return True
    except ConnectionRefusedError:
        return False


def tcp_exchange(address, port, *pieces, timeout=2.0):
    """Sends the pieces (a pause between them), then reads until the server closes: its bytes; None
    when nothing listens (connection refused)."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as s:
            for i, piece in enumerate(pieces):
                if i:
                    time.sleep(0.05)
                s.sendall(piece)
            answer = b""
            try:
                while chunk := s.recv(4096):
                    answer += chunk
            except ConnectionResetError:
                pass
            return answer
    except ConnectionRefusedError:
        return None


CONFIRM_SSL = bytes.fromhex("03000013 0ed00000123400 0200080001000000")
CONFIRM_RDP = bytes.fromhex("03000013 0ed00000123400 0200080000000000")
CONFIRM_PLAIN = bytes.fromhex("0300000b 06d00000123400")


def check_rdp(m, ec2):
    """rdp_port: refused before the service time, then an RDP host's Connection Confirm; anything else
    is closed unanswered; rdp_mute accepts and never answers."""
    port, rdp = free_port(), free_port()
    assert error_of_control(m, "/timing", {"port": port, "rdp_port": port}) == 400, "rdp_port == port"
    m.post("/timing", {"boot_s": 0.3, "service_s": 0.3, "port": port, "rdp_port": rdp})
    started = time.monotonic()
    instance = run_on(ec2, AMI)
    address = instance["PrivateIpAddress"]
    if time.monotonic() - started < 0.5:  # not checkable on a machine this slow
        assert tcp_exchange(address, rdp, x224_request(requested=3)) is None, "before its service time: refused"
    wait_until(lambda: listening(address, rdp), 2.0, "RDP listens after its service time")
    cookie = b"Cookie: mstshash=amiprobe\r\n"
    assert tcp_exchange(address, rdp, x224_request(cookie, requested=0x0B)) == CONFIRM_SSL, "SSL requested: SSL"
    assert tcp_exchange(address, rdp, x224_request(requested=0)) == CONFIRM_RDP, "RDP only: standard RDP"
    assert tcp_exchange(address, rdp, x224_request(requested=2)) == CONFIRM_RDP, "no SSL bit: standard RDP"
    assert tcp_exchange(address, rdp, x224_request(cookie)) == CONFIRM_PLAIN, "no RDP_NEG_REQ: no negotiation data"
    request = x224_request(cookie, requested=1)
    assert tcp_exchange(address, rdp, request[:3], request[3:9], request[9:]) == CONFIRM_SSL, "in pieces"
    assert tcp_exchange(address, rdp, b"GET / HTTP/1.0\r\n\r\n") == b"", "HTTP on the RDP port: closed"
    bad_li = bytearray(request)
    bad_li[4] += 1
    assert tcp_exchange(address, rdp, bytes(bad_li)) == b"", "inconsistent length indicator: closed"
    not_cr = bytearray(request)
    not_cr[5] = 0xD0
    assert tcp_exchange(address, rdp, bytes(not_cr)) == b"", "not a Connection Request: closed"
    assert http_get(address, port) == (200, "ok"), "HTTP still on its own port"
    assert m.get("/timeline")[instance["InstanceId"]]["rdp_port"] == rdp
    # Muted: the port is open, the request gets no answer.
    m.post("/timing", {"boot_s": 0.0, "service_s": 0.0, "port": port, "rdp_port": rdp, "rdp_mute": True})
    muted = run_on(ec2, AMI)["PrivateIpAddress"]
    wait_until(lambda: http_get(muted, port) is not None, 2.0, "the muted instance's services start")
    with socket.create_connection((muted, rdp), timeout=0.5) as s:
        s.sendall(x224_request(requested=3))
        try:
            got = s.recv(100)
            raise AssertionError(f"rdp_mute answered {got!r}")
        except socket.timeout:
            pass


FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "ec2")


def check_windows_console_fixtures(m, ec2):
    """The Windows console fixtures go through /console verbatim (their <Password> blocks included);
    after a reboot the second boot follows the first."""
    texts = {}
    for name in ("windows-ec2launch-v2-ready.log", "windows-ec2launch-v1-ready.log", "windows-ec2launch-v2-failed.log"):
        with open(os.path.join(FIXTURES, name), encoding="utf-8") as f:
            texts[name] = f.read()
        assert texts[name].count("Message: Windows is Ready to use") == (0 if "failed" in name else 1), name
        assert not texts[name].startswith("#"), f"{name}: served verbatim, no comment lines"
    win = windows_image(m)
    ready, failed = (run_on(ec2, win)["InstanceId"] for _ in range(2))
    v2, v1 = texts["windows-ec2launch-v2-ready.log"], texts["windows-ec2launch-v1-ready.log"]
    m.post("/console", {"instance_id": ready, "text": v2, "after_reboot": v2})
    m.post("/console", {"instance_id": failed, "text": texts["windows-ec2launch-v2-failed.log"]})
    assert ec2.get_console_output(InstanceId=ready)["Output"] == v2
    assert ec2.get_console_output(InstanceId=failed)["Output"] == texts["windows-ec2launch-v2-failed.log"]
    ec2.reboot_instances(InstanceIds=[ready, failed])
    assert ec2.get_console_output(InstanceId=ready)["Output"] == v2 + v2, "two boots, two ready lines"
    assert ec2.get_console_output(InstanceId=failed)["Output"] == texts["windows-ec2launch-v2-failed.log"]
    assert v1.endswith("Message: Windows is Ready to use\n")


def error_of_control(m, path, body):
    try:
        m.post(path, body)
    except urllib.error.HTTPError as e:
        return e.code
    return 200


def check_reboot(m, ec2):
    """RebootInstances: a running timed instance's services go away for reboot_s and come back, the
    instance stays running, /timeline lists the reboot; the console gains `after_reboot` once per reboot
    when it is over. Pending and terminated instances are left alone (EC2 ignores them)."""
    port, rdp = free_port(), free_port()
    m.post("/console", {"text": "boot one\n", "after_reboot": "boot again\n"})
    m.post("/timing", {"boot_s": 0.2, "service_s": 0.1, "port": port, "rdp_port": rdp, "reboot_s": 0.8})
    out = ec2.run_instances(ImageId=AMI, InstanceType="t3.micro", MinCount=2, MaxCount=2)["Instances"]
    (first, address), (other, other_address) = ((i["InstanceId"], i["PrivateIpAddress"]) for i in out)
    wait_until(lambda: http_get(address, port) is not None and http_get(other_address, port) is not None, 2.0, "up")
    console = lambda i: ec2.get_console_output(InstanceId=i)["Output"]  # noqa: E731
    assert console(first) == "boot one\n"
    started = time.monotonic()
    ec2.reboot_instances(InstanceIds=[first])
    assert state(ec2, first) == "running", "running throughout a reboot, as on EC2"
    if time.monotonic() - started < 0.6:  # not checkable on a machine this slow
        assert http_get(address, port) is None and not listening(address, rdp), "down while rebooting"
        assert console(first) == "boot one\n", "the second boot's text only once the reboot is over"
    assert http_get(other_address, port) == (200, "ok"), "the other instance stays up"
    wait_until(lambda: http_get(address, port) is not None, 2.0, "services back after reboot_s")
    assert time.monotonic() - started >= 0.75, "back before reboot_s"
    assert tcp_exchange(address, rdp, x224_request(requested=1)) == CONFIRM_SSL, "RDP back too"
    wait_until(lambda: console(first) == "boot one\nboot again\n", 1.0, "console shows two boots")
    line = m.get("/timeline")
    assert len(line[first]["reboots"]) == 1 and line[other]["reboots"] == [], line
    assert line[first]["reboot_s"] == 0.8 and line[first]["reboots"][0] >= line[first]["service_at"], line[first]
    # A reboot of a pending instance, or of a terminated one, does nothing (moto would mark it running).
    m.post("/timing", {"boot_s": 30.0, "port": port})
    booting = run_one(ec2)
    m.post("/timing", {})
    gone = run_one(ec2)
    ec2.terminate_instances(InstanceIds=[gone])
    ec2.reboot_instances(InstanceIds=[booting, gone])
    assert (state(ec2, booting), state(ec2, gone)) == ("pending", "terminated")
    assert m.get("/timeline")[booting]["reboots"] == [] and console(gone) == "boot one\n"
    # Without /timing: the reboot is over at once; per instance after_reboot; each reboot adds a boot.
    plain, own = run_one(ec2), run_one(ec2)
    m.post("/console", {"instance_id": own, "text": "own\n", "after_reboot": "own again\n"})
    ec2.reboot_instances(InstanceIds=[plain, own])
    ec2.reboot_instances(InstanceIds=[plain])
    assert console(plain) == "boot one\nboot again\nboot again\n", console(plain)
    assert console(own) == "own\nown again\n", console(own)
    m.post("/console", {"after_reboot": None})
    assert console(plain) == "boot one\n", "null clears after_reboot"
    assert error_of(ec2.reboot_instances, InstanceIds=["i-0000000000000dead"])[0] == "InvalidInstanceID.NotFound"


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


def described(ec2, instance_id):
    return ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]


def states_until(ec2, instance_id, final, seconds):
    """The states DescribeInstances showed, polled until `final` (within `seconds`), and the last answer."""
    seen, deadline = [], time.monotonic() + seconds
    while True:
        instance = described(ec2, instance_id)
        if not seen or seen[-1] != instance["State"]["Name"]:
            seen.append(instance["State"]["Name"])
        if seen[-1] == final:
            return seen, instance
        assert time.monotonic() < deadline, f"{instance_id} never {final}: {seen}"
        time.sleep(0.05)


def check_fate(m, ec2):
    kms = m.post("/image", {})["image_id"]
    message = "Client.InternalError: Client error on launch"
    m.post("/fate", {"image_id": kms, "after": "pending", "delay_s": 1, "code": "Client.InternalError", "message": message})
    guest = m.post("/image", {})["image_id"]
    shutdown = {"image_id": guest, "after": "running", "delay_s": 1, "state": "stopped", "code": "Client.InstanceInitiatedShutdown"}
    m.post("/fate", dict(shutdown, message="Client.InstanceInitiatedShutdown: Instance initiated shutdown"))
    doomed, powered_off, spared = run_on(ec2, kms), run_on(ec2, guest), run_on(ec2, AMI)
    assert doomed["State"]["Name"] == "pending", doomed["State"]
    # Runs until its time (moto's RunInstances answers `pending` for every launch).
    assert state(ec2, powered_off["InstanceId"]) == "running"
    # Held pending until its time, then terminated with EC2's reason: it never ran.
    seen, instance = states_until(ec2, doomed["InstanceId"], "terminated", 10)
    assert seen == ["pending", "terminated"], seen
    assert instance["StateReason"] == {"Code": "Client.InternalError", "Message": message}, instance["StateReason"]
    assert instance["StateTransitionReason"].startswith("Service initiated"), instance["StateTransitionReason"]
    # Then stopped itself.
    _, instance = states_until(ec2, powered_off["InstanceId"], "stopped", 10)
    assert instance["StateReason"]["Code"] == "Client.InstanceInitiatedShutdown", instance["StateReason"]
    # Another image's instance runs on; so does one launched after the fate was dropped.
    assert state(ec2, spared["InstanceId"]) == "running"
    m.post("/fate", {"image_id": kms, "code": None})
    later = run_on(ec2, kms)
    time.sleep(1.2)
    assert state(ec2, later["InstanceId"]) == "running"
    # A TerminateInstances before its time keeps moto's own reason: the fate lets it go.
    m.post("/fate", {"image_id": kms, "delay_s": 1, "code": "Server.InternalError"})
    early = run_on(ec2, kms)["InstanceId"]
    ec2.terminate_instances(InstanceIds=[early])
    time.sleep(1.2)
    assert described(ec2, early)["StateReason"]["Code"] == "Client.UserInitiatedShutdown"
    assert error_of_control(m, "/fate", {"image_id": kms, "code": "X", "after": "booting"}) == 400
    assert error_of_control(m, "/fate", {"image_id": "i-1", "code": "X"}) == 400


def check_encrypted_image(m, ec2):
    shared = image_of(ec2, m.post("/image", {"owner_id": "111122223333", "encrypted": True})["image_id"])
    assert shared["OwnerId"] == "111122223333", shared
    ebs = shared["BlockDeviceMappings"][0]["Ebs"]
    assert ebs["Encrypted"] is True and ":111122223333:key/" in ebs["KmsKeyId"], ebs
    own = image_of(ec2, m.post("/image", {})["image_id"])
    assert own["OwnerId"] != "111122223333" and not own["BlockDeviceMappings"][0]["Ebs"].get("Encrypted"), own


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
    m.post("/windows", {"password_s": 100.0, "wrong_key": True})
    m.post("/console", {"after_reboot": "again\n"})
    m.post("/reset")
    started = time.monotonic()
    ec2.create_key_pair(KeyName="after-reset")
    assert "after-reset" in key_names(ec2)
    instance_id = run_one(ec2)
    ec2.terminate_instances(InstanceIds=[instance_id])
    assert state(ec2, instance_id) == "terminated"
    assert time.monotonic() - started < 1.0, "latency survived the reset"
    assert "DescribeRegions" not in m.get("/calls")
    created = ec2.create_key_pair(KeyName="after-reset-win")
    private = serialization.load_pem_private_key(created["KeyMaterial"].encode(), None)
    win = run_on(ec2, windows_image(m), KeyName="after-reset-win")["InstanceId"]
    assert decrypt(private, password_data(ec2, win)) == m.get("/windows")[win], "/windows' settings survived the reset"
    before = ec2.get_console_output(InstanceId=win)["Output"]
    ec2.reboot_instances(InstanceIds=[win])
    assert ec2.get_console_output(InstanceId=win)["Output"] == before, "after_reboot survived the reset"
    assert m.get("/timeline") == {}, "no timed instance since the reset"


def sts_client(m):
    return boto3.client(
        "sts",
        endpoint_url=f"http://127.0.0.1:{m.port}",
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}),
    )


def decoded(m, message):
    """The document inside an UnauthorizedOperation message, through STS as a client decodes it."""
    sts = sts_client(m)
    encoded = message.split("Encoded authorization failure message: ", 1)[1]
    return json.loads(sts.decode_authorization_message(EncodedMessage=encoded)["DecodedMessage"]), sts


def check_dry_run_and_deny(m, ec2):
    tags = [{"ResourceType": "instance", "Tags": [{"Key": "amiprobe:run-id", "Value": "r"}]}]
    # Allowed: DryRunOperation, and nothing happens (moto alone would launch, or delete the key).
    ec2.create_key_pair(KeyName="kept")
    for call, kwargs in [
        (ec2.run_instances, dict(ImageId=AMI, MinCount=1, MaxCount=1, TagSpecifications=tags)),
        (ec2.delete_key_pair, dict(KeyName="kept")),
        (ec2.terminate_instances, dict(InstanceIds=["i-00000000000000000"])),
    ]:
        code, status, _ = error_of(call, DryRun=True, **kwargs)
        assert (code, status) == ("DryRunOperation", 412), (call, code, status)
    assert ec2.describe_instances()["Reservations"] == [], "a DryRun launched"
    assert key_names(ec2) == {"kept"}, "a DryRun deleted"
    calls = m.get("/calls")
    assert calls.get("dryrun:RunInstances") == 1 and "RunInstances" not in calls, calls
    assert len(m.get("/requests?action=dryrun:RunInstances")) == 1
    # Denied: DryRun or not, with the action in the encoded message; tagging needs CreateTags.
    m.post("/deny", {"actions": ["ec2:CreateTags"]})
    code, status, message = error_of(ec2.run_instances, ImageId=AMI, MinCount=1, MaxCount=1, TagSpecifications=tags)
    assert (code, status) == ("UnauthorizedOperation", 403), (code, status)
    document, sts = decoded(m, message)
    assert document["allowed"] is False and document["context"]["action"] == "ec2:CreateTags", document
    run_one(ec2)  # untagged: allowed
    code, _, _ = error_of(ec2.run_instances, ImageId=AMI, MinCount=1, MaxCount=1, TagSpecifications=tags, DryRun=True)
    assert code == "UnauthorizedOperation", code
    m.post("/deny", {"actions": ["ec2:TerminateInstances", "sts:DecodeAuthorizationMessage"]})
    code, _, message = error_of(ec2.terminate_instances, InstanceIds=["i-00000000000000000"], DryRun=True)
    assert code == "UnauthorizedOperation", code
    encoded = message.split("Encoded authorization failure message: ", 1)[1]
    code, status, _ = error_of(sts.decode_authorization_message, EncodedMessage=encoded)
    assert (code, status) == ("AccessDenied", 403), (code, status)
    m.post("/deny", {"actions": []})
    code, _, _ = error_of(sts.decode_authorization_message, EncodedMessage="not ours")
    assert code == "InvalidAuthorizationMessageException", code
    m.post("/deny", {"actions": ["ec2:RunInstances"]})
    m.post("/reset")
    run_one(ec2)  # /reset allows everything again


CHECKS = [
    ("dry run and deny", check_dry_run_and_deny),
    ("iam policy evaluator", lambda m, ec2: iam_policy_selftest.check_evaluator()),
    ("iam policy enforced", lambda m, ec2: iam_policy_selftest.check_policy_hook(m, ec2, sts_client(m))),
    ("latency", check_latency),
    ("consistency", check_consistency),
    ("delete missing key pair", lambda m, ec2: check_delete_missing_key_pair(ec2)),
    ("chaos", check_chaos),
    ("shutting_down", check_shutting_down),
    ("timing", check_timing),
    ("timing drop_until_service", check_drop_until_service),
    ("throttle classes", check_throttle_classes),
    ("status checks", check_status),
    ("security group in use", check_group_dependency),
    ("faults counted", check_faults_counted),
    ("existing endpoints", check_existing),
    ("requests recorded", check_requests),
    ("images", check_images),
    ("fate", check_fate),
    ("encrypted image", check_encrypted_image),
    ("windows password", check_windows_password),
    ("windows password timed", check_windows_password_timed),
    ("rdp", check_rdp),
    ("reboot", check_reboot),
    ("windows console fixtures", check_windows_console_fixtures),
    ("launch volumes", check_launch_volumes),
    ("instance type data", lambda m, ec2: check_instance_type_data(ec2)),
    ("reset", check_reset),
    *ec2_rules_selftest.CHECKS,
    *ssm_run_selftest.CHECKS,
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
