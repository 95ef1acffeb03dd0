"""Self-test of the launcher's SSM Run Command (ssm_run.py, POST /agent), run by moto_launcher_selftest.py:
its CHECKS, each given the launcher (`m`) and an EC2 client, after a /reset.

SSM is driven with boto3 against the launcher's port, dummy credentials and no SDK retries; requests
the SDK itself would refuse (a minimum not met) go through a client that does not validate.
"""

import json
import socket
import time
import urllib.error
from datetime import datetime, timezone

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

AMI = "ami-03cf127a"
SHELL = "AWS-RunShellScript"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ssm_client(m, validate=True):
    return boto3.client(
        "ssm",
        endpoint_url=f"http://127.0.0.1:{m.port}",
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}, parameter_validation=validate),
    )


def error_of(call, **kwargs):
    """(code, HTTP status, message) of a call that must fail."""
    try:
        call(**kwargs)
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Message"]
    raise AssertionError(f"{call.__name__} succeeded")


def launch(ec2, count=1):
    out = ec2.run_instances(ImageId=AMI, InstanceType="t3.micro", MinCount=count, MaxCount=count)
    return [i["InstanceId"] for i in out["Instances"]]


def managed(ssm, *ids):
    """instance id -> its DescribeInstanceInformation entry, for those of `ids` SSM manages."""
    out = ssm.describe_instance_information(Filters=[{"Key": "InstanceIds", "Values": list(ids)}])
    return {i["InstanceId"]: i for i in out["InstanceInformationList"]}


def wait_for(check, seconds, what):
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        time.sleep(0.05)


def send(ssm, ids, commands=("echo hi",), **extra):
    out = ssm.send_command(InstanceIds=list(ids), DocumentName=SHELL, Parameters={"commands": list(commands)}, **extra)
    return out["Command"]["CommandId"]


def invocation(ssm, command_id, instance_id):
    """GetCommandInvocation, or None while SSM answers InvocationDoesNotExist."""
    try:
        return ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
    except ssm.exceptions.InvocationDoesNotExist:
        return None


def invocation_when(ssm, command_id, instance_id, ready, what, seconds=2.0):
    """GetCommandInvocation once it is visible and `ready(answer)` holds."""

    def check():
        out = invocation(ssm, command_id, instance_id)
        return out if out is not None and ready(out) else None

    return wait_for(check, seconds, what)


def check_registration(m, ec2):
    """An agent registers online_s after the instance runs (a /timing one: after its boot time); an
    image without an agent config, or online_s null, never registers: absent, not listed."""
    ssm = ssm_client(m)
    m.post("/agent", {"online_s": 0.6})
    started = time.monotonic()
    (first,) = launch(ec2)
    assert managed(ssm, first) == {}, "registered before online_s"
    entry = wait_for(lambda: managed(ssm, first).get(first), 3.0, "agent online")
    assert time.monotonic() - started >= 0.55, "online before online_s"
    assert entry["PingStatus"] == "Online" and entry["PlatformType"] == "Linux", entry
    assert entry["ResourceType"] == "EC2Instance" and entry["AgentVersion"] and entry["IPAddress"], entry
    assert abs(entry["LastPingDateTime"].timestamp() - time.time()) < 5, entry
    m.post("/agent", {"online_s": None})
    (never,) = launch(ec2)
    m.post("/agent", {"clear": True})
    (bare,) = launch(ec2)
    m.post("/agent", {"online_s": 0.2})
    m.post("/timing", {"boot_s": 0.8, "port": free_port()})
    (timed,) = launch(ec2)
    time.sleep(0.5)
    assert set(managed(ssm, first, never, bare, timed)) == {first}, "only the registered agent is listed"
    wait_for(lambda: timed in managed(ssm, timed), 3.0, "timed instance's agent")
    assert m.get("/timeline")[timed]["running_at"] is not None, "online before it ran"
    time.sleep(0.3)
    assert set(managed(ssm, first, never, bare, timed)) == {first, timed}
    listed = ssm.describe_instance_information()["InstanceInformationList"]
    assert [i["InstanceId"] for i in listed] == [first, timed], listed


def check_describe_refusals(m, ec2):
    """DescribeInstanceInformation: filter keys and values, MaxResults 5..50, paging."""
    ssm, loose = ssm_client(m), ssm_client(m, validate=False)
    m.post("/agent", {"online_s": 0})
    ids = launch(ec2, 7)
    code, status, _ = error_of(ssm.describe_instance_information, Filters=[{"Key": "InstanceId", "Values": ids}])
    assert (code, status) == ("InvalidFilterKey", 400), code
    many = [f"i-{n:017x}" for n in range(51)]
    code, _, message = error_of(ssm.describe_instance_information, Filters=[{"Key": "InstanceIds", "Values": many}])
    assert code == "InvalidInstanceInformationFilterValue", (code, message)
    code, _, message = error_of(ssm.describe_instance_information, Filters=[{"Key": "InstanceIds", "Values": many * 2}])
    assert code == "ValidationException" and "less than or equal to 100" in message, message
    code, _, message = error_of(ssm.describe_instance_information, Filters=[{"Key": "InstanceIds", "Values": ["web-1"]}])
    assert code == "InvalidInstanceInformationFilterValue", (code, message)
    for size in (4, 51):
        code, _, message = error_of(loose.describe_instance_information, MaxResults=size)
        assert code == "ValidationException" and "'maxResults'" in message, message
    code, status, _ = error_of(loose.describe_instance_information, MaxResults="5")  # a string for a number
    assert (code, status) == ("SerializationException", 400), code
    pages, token = [], None
    while True:
        extra = {"NextToken": token} if token else {}
        out = ssm.describe_instance_information(Filters=[{"Key": "InstanceIds", "Values": ids}], MaxResults=5, **extra)
        pages.append([i["InstanceId"] for i in out["InstanceInformationList"]])
        token = out.get("NextToken")
        if not token:
            break
    assert pages == [ids[:5], ids[5:]], pages
    assert error_of(ssm.describe_instance_information, NextToken="nope")[0] == "InvalidNextToken"


def check_send_refusals(m, ec2):
    """SendCommand: what SSM refuses and moto takes, and no command made of any of it."""
    ssm, loose = ssm_client(m), ssm_client(m, validate=False)
    m.post("/agent", {"online_s": 0})
    (online,) = launch(ec2)
    m.post("/agent", {"online_s": 30})
    (later,) = launch(ec2)
    m.post("/agent", {"online_s": 0, "platform": "Windows"})
    (windows,) = launch(ec2)
    ghost = "i-0123456789abcdef0"
    commands = {"commands": ["true"]}
    timeout = {**commands, "executionTimeout": ["0"]}
    too_long = {**commands, "executionTimeout": ["172801"]}
    cases = [
        (dict(InstanceIds=[online] * 51, DocumentName=SHELL, Parameters=commands), "ValidationException"),
        (dict(InstanceIds=[], DocumentName=SHELL, Parameters=commands), "ValidationException"),
        (dict(InstanceIds=["web-1"], DocumentName=SHELL, Parameters=commands), "ValidationException"),
        (dict(InstanceIds=[online, online], DocumentName=SHELL, Parameters=commands), "DuplicateInstanceId"),
        (dict(InstanceIds=[online], DocumentName="AWS-RunBashScript", Parameters=commands), "InvalidDocument"),
        (dict(InstanceIds=[online], DocumentName=SHELL, Parameters={}), "InvalidParameters"),
        (dict(InstanceIds=[online], DocumentName=SHELL, Parameters={"commands": []}), "InvalidParameters"),
        (dict(InstanceIds=[online], DocumentName=SHELL, Parameters={"command": ["true"]}), "InvalidParameters"),
        (dict(InstanceIds=[online], DocumentName=SHELL, Parameters=timeout), "InvalidParameters"),
        (dict(InstanceIds=[online], DocumentName=SHELL, Parameters=too_long), "InvalidParameters"),
        (dict(InstanceIds=[online], DocumentName=SHELL, Parameters=commands, TimeoutSeconds=29), "ValidationException"),
        (dict(InstanceIds=[online], DocumentName=SHELL, Parameters=commands, TimeoutSeconds=2592001), "ValidationException"),
        (dict(InstanceIds=[online], DocumentName=SHELL, Parameters=commands, Comment="c" * 101), "ValidationException"),
        (dict(InstanceIds=[online, later], DocumentName=SHELL, Parameters=commands), "InvalidInstanceId"),
        (dict(InstanceIds=[ghost], DocumentName=SHELL, Parameters=commands), "InvalidInstanceId"),
        (dict(InstanceIds=[windows], DocumentName=SHELL, Parameters=commands), "UnsupportedPlatformType"),
        (dict(InstanceIds=[online], DocumentName="AWS-RunPowerShellScript", Parameters=commands), "UnsupportedPlatformType"),
    ]
    for kwargs, expected in cases:
        code, status, message = error_of(loose.send_command, **kwargs)
        assert (code, status) == (expected, 400), (kwargs, code, status, message)
    message = error_of(ssm.send_command, InstanceIds=[later, ghost], DocumentName=SHELL, Parameters=commands)[2]
    assert message == f"Instances [[{later}, {ghost}]] not in a valid state for account 123456789012", message
    assert m.get("/agent")["commands"] == [], "a refused SendCommand made a command"
    arn = f"arn:aws:ssm:eu-west-1::document/{SHELL}"
    send(ssm, [online])  # by name; then by ARN, and PowerShell on Windows
    ssm.send_command(InstanceIds=[online], DocumentName=arn, Parameters={**commands, "executionTimeout": ["172800"]})
    ssm.send_command(InstanceIds=[windows], DocumentName="AWS-RunPowerShellScript", Parameters=commands, Comment="c" * 100)
    assert [c["document"] for c in m.get("/agent")["commands"]] == [SHELL, SHELL, "AWS-RunPowerShellScript"]
    assert m.get("/calls")["ssm:SendCommand"] == len(cases) + 4


def check_invocation_lifecycle(m, ec2):
    """InvocationDoesNotExist at first; Pending -> InProgress -> Success or Failed with the exit code;
    ListCommandInvocations over every instance; GET /agent, /calls and /requests."""
    ssm = ssm_client(m)
    failing = {"contains": "exit 3", "stdout": "partial\n", "stderr": "boom\n", "exit_code": 3}
    m.post("/agent", {"online_s": 0, "pending_s": 0.8, "run_s": 0.8, "stdout": "hello\n", "outputs": [failing]})
    ids = launch(ec2, 2)
    sent_at = time.monotonic()
    ok = send(ssm, ids, ["echo hello"])
    early = invocation(ssm, ok, ids[0]), ssm.list_command_invocations(CommandId=ok)["CommandInvocations"]
    if time.monotonic() - sent_at < 0.45:  # not checkable on a machine this slow
        assert early == (None, []), f"visible right after SendCommand: {early}"
    first = invocation_when(ssm, ok, ids[0], lambda r: True, "invocation visible")
    assert (first["Status"], first["StatusDetails"], first["ResponseCode"]) == ("Pending", "Pending", -1), first
    assert first["ExecutionStartDateTime"] == "" and first["StandardOutputContent"] == "", first
    running = invocation_when(ssm, ok, ids[0], lambda r: r["Status"] != "Pending", "start")
    assert (running["Status"], running["StatusDetails"], running["ResponseCode"]) == ("InProgress", "InProgress", -1), running
    assert running["ExecutionStartDateTime"].endswith("Z") and running["ExecutionEndDateTime"] == "", running
    done = invocation_when(ssm, ok, ids[0], lambda r: r["Status"] != "InProgress", "end")
    assert (done["Status"], done["StatusDetails"], done["ResponseCode"]) == ("Success", "Success", 0), done
    assert done["StandardOutputContent"] == "hello\n" and done["ExecutionEndDateTime"], done
    bad = send(ssm, ids[:1], ["set -e", "exit 3"])
    time.sleep(1.7)
    failed = invocation(ssm, bad, ids[0])
    assert (failed["Status"], failed["StatusDetails"], failed["ResponseCode"]) == ("Failed", "Failed", 3), failed
    assert (failed["StandardOutputContent"], failed["StandardErrorContent"]) == ("partial\n", "boom\n"), failed
    listed = ssm.list_command_invocations(CommandId=ok)["CommandInvocations"]
    assert [(i["InstanceId"], i["Status"]) for i in listed] == [(ids[0], "Success"), (ids[1], "Success")], listed
    assert listed[0]["CommandPlugins"] == [], "plugins only with Details"
    plugin = ssm.list_command_invocations(CommandId=bad, Details=True)["CommandInvocations"][0]["CommandPlugins"][0]
    assert (plugin["Name"], plugin["ResponseCode"], plugin["Output"]) == ("aws:runShellScript", 3, "partial\n"), plugin
    assert error_of(ssm.get_command_invocation, CommandId=ok, InstanceId="i-0123456789abcdef0")[0] == "InvocationDoesNotExist"
    code = error_of(ssm.get_command_invocation, CommandId=ok, InstanceId=ids[0], PluginName="aws:runPowerShellScript")[0]
    assert code == "InvalidPluginName", code
    assert m.get("/agent")["commands"] == [
        {"command_id": ok, "instance_ids": ids, "document": SHELL, "commands": ["echo hello"]},
        {"command_id": bad, "instance_ids": ids[:1], "document": SHELL, "commands": ["set -e", "exit 3"]},
    ]
    calls = m.get("/calls")
    assert calls["ssm:SendCommand"] == 2 and calls["ssm:ListCommandInvocations"] == 3, calls
    sent = m.get("/requests?action=ssm:SendCommand")[0]
    assert sent["Parameters"] == {"commands": ["echo hello"]} and sent["InstanceIds"] == ids, sent
    assert sent["Action"] == "ssm:SendCommand" and sent["_region"] == "eu-west-1", sent


def check_output_cut(m, ec2):
    """SSM gives 24,000 characters of stdout and 8,000 of stderr, and cuts silently."""
    ssm = ssm_client(m)
    m.post("/agent", {"online_s": 0, "pending_s": 0, "run_s": 0, "stdout": "o" * 30_000, "stderr": "e" * 9_000})
    (instance,) = launch(ec2)
    command = send(ssm, [instance])
    out = invocation_when(ssm, command, instance, lambda r: True, "invocation")
    assert out["Status"] == "Success", out["Status"]
    assert (len(out["StandardOutputContent"]), len(out["StandardErrorContent"])) == (24_000, 8_000)
    assert out["StandardOutputUrl"] == "" and out["StandardErrorUrl"] == ""


def check_execution_timeout(m, ec2):
    """A command running past its executionTimeout parameter ends TimedOut / ExecutionTimedOut."""
    ssm = ssm_client(m)
    m.post("/agent", {"online_s": 0, "pending_s": 0, "run_s": 5})
    (instance,) = launch(ec2)
    out = ssm.send_command(
        InstanceIds=[instance], DocumentName=SHELL, Parameters={"commands": ["sleep 5"], "executionTimeout": ["1"]}
    )
    command = out["Command"]["CommandId"]
    done = invocation_when(ssm, command, instance, lambda r: r["Status"] != "InProgress", "timed out", 3.0)
    assert (done["Status"], done["StatusDetails"], done["ResponseCode"]) == ("TimedOut", "ExecutionTimedOut", -1), done


def ping_of(ssm, instance):
    entry = managed(ssm, instance).get(instance)
    return entry and (entry["PingStatus"], entry["LastPingDateTime"])


def online_ping(ssm, instance):
    ping = ping_of(ssm, instance)
    return ping if ping and ping[0] == "Online" else None


def check_reboot_window(m, ec2):
    """RebootInstances: ConnectionLost for offline_after_reboot_s, then Online with a new
    LastPingDateTime; a command sent meanwhile waits Pending and runs once it is back."""
    ssm = ssm_client(m)
    m.post("/agent", {"online_s": 0, "pending_s": 0, "run_s": 0.2, "offline_after_reboot_s": 1.2})
    (instance,) = launch(ec2)
    before = ping_of(ssm, instance)
    assert before[0] == "Online", before
    ec2.reboot_instances(InstanceIds=[instance])
    rebooted = time.monotonic()
    assert ping_of(ssm, instance)[0] == "ConnectionLost"
    command = send(ssm, [instance])  # a ConnectionLost agent still takes commands (the state is valid)
    time.sleep(0.6)
    if time.monotonic() - rebooted < 1.1:  # not checkable on a machine this slow
        assert invocation(ssm, command, instance)["Status"] == "Pending", "ran while the agent was away"
    after = wait_for(lambda: online_ping(ssm, instance), 3.0, "back online")
    assert time.monotonic() - rebooted >= 1.15 and after[1] > before[1], (after, before)
    done = invocation_when(ssm, command, instance, lambda r: r["Status"] == "Success", "ran")
    started = datetime.strptime(done["ExecutionStartDateTime"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    assert started.timestamp() >= after[1].timestamp() - 0.002, ("ran before the agent was back", started, after)


def check_terminated(m, ec2):
    """TerminateInstances: the agent ConnectionLost, then absent; its pending invocations Undeliverable;
    SendCommand to it InvalidInstanceId."""
    ssm = ssm_client(m)
    m.post("/agent", {"online_s": 0, "pending_s": 30})
    (instance,) = launch(ec2)
    command = send(ssm, [instance])
    ec2.terminate_instances(InstanceIds=[instance])
    assert ping_of(ssm, instance)[0] == "ConnectionLost"
    time.sleep(0.5)
    out = invocation(ssm, command, instance)
    assert (out["Status"], out["StatusDetails"], out["ResponseCode"]) == ("Failed", "Undeliverable", -1), out
    code = error_of(ssm.send_command, InstanceIds=[instance], DocumentName=SHELL, Parameters={"commands": ["x"]})[0]
    assert code == "InvalidInstanceId", code


def check_authz_and_faults(m, ec2):
    """/deny and /policy refuse the Run Command calls with AccessDeniedException; /fault fails them."""
    ssm = ssm_client(m)
    m.post("/agent", {"online_s": 0})
    (instance,) = launch(ec2)
    m.post("/deny", {"actions": ["ssm:DescribeInstanceInformation", "ssm:SendCommand"]})
    for call, kwargs in [
        (ssm.describe_instance_information, {}),
        (ssm.send_command, dict(InstanceIds=[instance], DocumentName=SHELL, Parameters={"commands": ["x"]})),
    ]:
        code, status, message = error_of(call, **kwargs)
        assert (code, status) == ("AccessDeniedException", 400) and "not authorized" in message, (code, message)
    m.post("/deny", {"actions": []})
    document = f"arn:aws:ssm:eu-west-1::document/{SHELL}"
    statement = {"Effect": "Allow", "Action": "ssm:SendCommand", "Resource": document}
    m.post("/policy", {"document": {"Version": "2012-10-17", "Statement": [statement]}})
    code, _, message = error_of(ssm.send_command, InstanceIds=[instance], DocumentName=SHELL, Parameters={"commands": ["x"]})
    assert code == "AccessDeniedException" and message.endswith(f":instance/{instance}"), message
    code, _, _ = error_of(ssm.get_command_invocation, CommandId="0" * 36, InstanceId=instance)
    assert code == "AccessDeniedException", code
    statement["Resource"] = [document, "arn:aws:ec2:*:*:instance/*"]
    m.post("/policy", {"document": {"Version": "2012-10-17", "Statement": [statement]}})
    send(ssm, [instance])
    m.post("/policy", {"document": None})
    m.post("/fault", {"action": "ssm:SendCommand", "code": "ThrottlingException", "status": 400})
    code, status, _ = error_of(ssm.send_command, InstanceIds=[instance], DocumentName=SHELL, Parameters={"commands": ["x"]})
    assert (code, status) == ("ThrottlingException", 400), (code, status)
    send(ssm, [instance])  # the fault is used up
    calls = m.get("/calls")
    assert calls["fault:ssm:SendCommand"] == 1 and calls["ssm:SendCommand"] == 5, calls


def check_agent_endpoint(m, ec2):
    """POST /agent refuses a body that makes no sense; /reset forgets agents, configs and commands."""
    for body in ({"platform": "BeOS"}, {"online_s": -1}, {"outputs": [{"stdout": "x"}]}, {"exit_code": "1"}, {"onlin_s": 1}):
        try:
            m.post("/agent", body)
        except urllib.error.HTTPError as e:
            assert e.code == 400 and json.loads(e.read())["error"].startswith("/agent: "), body
        else:
            raise AssertionError(f"/agent took {body}")
    m.post("/agent", {"online_s": 0})
    (instance,) = launch(ec2)
    send(ssm_client(m), [instance])
    m.post("/reset")
    assert m.get("/agent") == {"commands": [], "configs": {}, "agents": {}}, m.get("/agent")


CHECKS = [
    ("ssm agent registration", check_registration),
    ("ssm describe refusals", check_describe_refusals),
    ("ssm send refusals", check_send_refusals),
    ("ssm invocation lifecycle", check_invocation_lifecycle),
    ("ssm output cut", check_output_cut),
    ("ssm execution timeout", check_execution_timeout),
    ("ssm reboot window", check_reboot_window),
    ("ssm terminated instance", check_terminated),
    ("ssm deny, policy and faults", check_authz_and_faults),
    ("ssm /agent endpoint", check_agent_endpoint),
]
