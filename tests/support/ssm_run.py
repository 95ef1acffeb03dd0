"""AWS Systems Manager Run Command for moto_launcher.py, as SSM behaves: managed instances whose agent
registers a while after boot, goes away during a reboot and is forgotten after termination; commands
that wait, run and end on their own clock; what SSM refuses, refused. moto's SSM has no agents, runs
nothing and accepts any request, so the four calls amiprobe makes are answered here instead
(SimpleSystemManagerResponse's methods replaced; every other SSM call stays moto's):

- DescribeInstanceInformation: the managed instances (an agent that never registered is absent), with
  Filters InstanceIds (at most 50 values), PingStatus, PlatformTypes, ResourceType (one value),
  AgentVersion; MaxResults (5..50, default 50) and NextToken paging.
- SendCommand: AWS-RunShellScript or AWS-RunPowerShellScript (by name or ARN) to 1..50 InstanceIds.
- GetCommandInvocation: one instance's invocation, its output cut as SSM cuts it.
- ListCommandInvocations: a command's invocations (MaxResults 1..50, NextToken, Details).

Every request is first checked against botocore's SSM model (ssm_model.py: ValidationException,
SerializationException), then authorized under /deny and /policy (ssm_authz.py:
AccessDeniedException), then against SSM's own rules below. Errors are moto's JsonRESTError(code,
message): HTTP 400, JSON `__type`/`message`; what SSM takes and the launcher does not model (Targets,
some filters) is an InternalServerError 500 naming it, so that a test cannot mistake it for SSM's word.

The agents, POST /agent (see moto_launcher.py's docstring for the body): an instance launched from an
image with an agent config gets an agent that registers `online_s` after the instance is `running`
(a /timing instance: its drawn boot time; otherwise RunInstances, where moto runs it at once; never
while the instance is not `running`, e.g. held by /pending or /fate). Its PingStatus:
- Online from registration, LastPingDateTime the moment it (re)registered;
- ConnectionLost from a RebootInstances for `offline_after_reboot_s`, then Online again with a new
  LastPingDateTime; ConnectionLost too while the instance is stopping, stopped or shutting-down;
- after TerminateInstances, ConnectionLost for FORGET_TERMINATED_S, then absent (SSM drops terminated
  EC2 instances; `Inactive` is for deregistered hybrid nodes and is never answered here).

SSM's rules for SendCommand (beyond the model): no Targets (not modelled here: a 500); duplicate ids
DuplicateInstanceId; another document InvalidDocument; DocumentVersion other than $DEFAULT, $LATEST
or 1 InvalidDocumentVersion; Parameters only `commands` (required, a non-empty list),
`workingDirectory` and `executionTimeout` (one string of digits, 1..172800), else InvalidParameters;
an instance that is no managed instance (agent never registered, forgotten, another region's) or whose
EC2 state is shutting-down or terminated: InvalidInstanceId "Instances [[i-1, i-2]] not in a valid
state for account ACCOUNT" (SSM's valid states are running, pending, stopping and stopped: a
ConnectionLost agent takes commands, which wait for it); a document for another platform than the
agent's UnsupportedPlatformType.

An invocation is Pending at least `pending_s` and until its agent is Online, then InProgress for
`run_s`, then Success (exit code 0) or Failed with that ResponseCode (-1 until it ends); TimedOut /
ExecutionTimedOut, that long after it started, when `run_s` is over the executionTimeout parameter
(default 3600); TimedOut /
DeliveryTimedOut when its agent was not Online before TimeoutSeconds (default 3600) passed; Failed /
Undeliverable when its instance is terminated before it started (SSM's "the managed node might not
exist"). A command already running when its instance reboots or ends runs on to its end (not SSM's
behaviour: it would be cut; not modelled). StatusDetails is Pending, InProgress, Success, Failed,
DeliveryTimedOut, ExecutionTimedOut or Undeliverable. For VISIBLE_AFTER_S after SendCommand an
invocation is not visible yet (SSM's eventual consistency): GetCommandInvocation answers
InvocationDoesNotExist and ListCommandInvocations lists none for the command, as for an unknown pair;
an unknown CommandId in ListCommandInvocations is InvalidCommandId. Output (given only once the
invocation ended) is cut silently: StandardOutputContent at 24,000 characters, StandardErrorContent at
8,000, a Details listing's plugin Output at 2,500.

Times are evaluated lazily on each call (and on each reboot and termination, so that a command due to
start before one does start), as the launcher's other clocks are.
"""

import base64
import binascii
import json
import re
import threading
import time
import uuid

from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.exceptions import JsonRESTError
from moto.ec2.models.instances import Instance, InstanceBackend
from moto.ssm.responses import SimpleSystemManagerResponse

import ssm_authz  # next to this file
import ssm_model  # next to this file

LOCK = threading.Lock()
STATE = {
    "configs": {},  # image id or "*" -> agent config (/agent), for instances launched from now on
    "agents": {},  # instance id -> agent (see `launched`), in launch order
    "commands": {},  # command id -> command (see `send_command`), in order
}

VISIBLE_AFTER_S = 0.5
FORGET_TERMINATED_S = 5.0
STDOUT_MAX, STDERR_MAX, DETAILS_OUTPUT_MAX = 24_000, 8_000, 2_500
DEFAULT_TIMEOUT_S = 3600  # SendCommand's TimeoutSeconds, and the executionTimeout parameter's default
# document name -> (platform it runs on, its one plugin)
DOCUMENTS = {
    "AWS-RunShellScript": ("Linux", "aws:runShellScript"),
    "AWS-RunPowerShellScript": ("Windows", "aws:runPowerShellScript"),
}
DOCUMENT_PARAMETERS = ("commands", "workingDirectory", "executionTimeout")
PLATFORMS = {"Linux": ("Amazon Linux", "2023"), "Windows": ("Microsoft Windows Server 2022 Datacenter", "10.0.20348")}
AGENT_VERSION = "3.3.1142.0"
INSTANCE_ID = re.compile(r"i-(\w{8}|\w{17})|mi-\w{17}", re.ASCII)
# Filter keys SSM knows for DescribeInstanceInformation (and tag:KEY, tag-key); those answered here
# are FILTER_FIELDS' (the InstanceInformation field each one matches), the others a NotModelled 500.
FILTER_KEYS = (
    "InstanceIds",
    "AgentVersion",
    "PingStatus",
    "PlatformTypes",
    "ActivationIds",
    "IamRole",
    "ResourceType",
    "AssociationStatus",
)
FILTER_FIELDS = {
    "InstanceIds": "InstanceId",
    "PingStatus": "PingStatus",
    "PlatformTypes": "PlatformType",
    "ResourceType": "ResourceType",
    "AgentVersion": "AgentVersion",
}
FILTER_VALUES = {"PingStatus": ("Online", "ConnectionLost", "Inactive"), "PlatformTypes": ("Windows", "Linux", "MacOS")}


class NotModelled(JsonRESTError):
    """A request SSM takes that the launcher does not model: a 500, so that a test sees it plainly."""

    code = 500

    def __init__(self, what):
        super().__init__("InternalServerError", f"moto_launcher: {what} is not modelled (ssm_run.py)")


def reset():
    with LOCK:
        for value in STATE.values():
            value.clear()


# --- /agent ---------------------------------------------------------------------------------------


# /agent's keys, as they are when left out.
DEFAULTS = {
    "online_s": 3.0,
    "platform": "Linux",
    "pending_s": 0.5,
    "run_s": 1.0,
    "stdout": "",
    "stderr": "",
    "exit_code": 0,
    "outputs": [],
    "offline_after_reboot_s": 5.0,
}


def seconds(data, key):
    value = data.get(key, DEFAULTS[key])
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{key} {value!r}: expected a number of seconds >= 0")
    return float(value)


def output_entry(entry):
    if not isinstance(entry, dict) or not isinstance(entry.get("contains"), str):
        raise ValueError(f"outputs entry {entry!r}: expected an object with a string `contains`")
    unknown = set(entry) - {"contains", "stdout", "stderr", "exit_code"}
    if unknown:
        raise ValueError(f"outputs entry: unknown keys {sorted(unknown)}")
    return dict(entry)


def configure(data):
    """POST /agent: a config for the instances launched from now on from `image_id` (every image
    without one: "*"), checked; ValueError (the answer's 400) for one that makes no sense."""
    if data.get("clear"):
        with LOCK:
            STATE["configs"].clear()
        return
    unknown = set(data) - {"image_id", *DEFAULTS}
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}")
    platform = data.get("platform", DEFAULTS["platform"])
    if platform not in PLATFORMS:
        raise ValueError(f"platform {platform!r}: expected Linux or Windows")
    exit_code = data.get("exit_code", DEFAULTS["exit_code"])
    if not isinstance(exit_code, int) or isinstance(exit_code, bool):
        raise ValueError(f"exit_code {exit_code!r}: expected an integer")
    config = {
        "online_s": None if "online_s" in data and data["online_s"] is None else seconds(data, "online_s"),
        "platform": platform,
        "pending_s": seconds(data, "pending_s"),
        "run_s": seconds(data, "run_s"),
        "stdout": str(data.get("stdout", DEFAULTS["stdout"])),
        "stderr": str(data.get("stderr", DEFAULTS["stderr"])),
        "exit_code": exit_code,
        "outputs": [output_entry(e) for e in data.get("outputs", [])],
        "offline_after_reboot_s": seconds(data, "offline_after_reboot_s"),
    }
    with LOCK:
        STATE["configs"][data.get("image_id") or "*"] = config


def status():
    """GET /agent: every SendCommand that was accepted, the configs, and each agent's PingStatus now."""
    now = time.monotonic()
    with LOCK:
        commands = [
            {
                "command_id": c["id"],
                "instance_ids": list(c["invocations"]),
                "document": c["document"],
                "commands": list(c["commands"]),
            }
            for c in STATE["commands"].values()
        ]
        agents = {}
        for instance_id, agent in STATE["agents"].items():
            ping = ping_status(agent, now)
            agents[instance_id] = {"ping_status": ping and ping[0], "platform": agent["config"]["platform"]}
        return {"commands": commands, "configs": dict(STATE["configs"]), "agents": agents}


# --- agents: launch, reboot, termination hooks ---------------------------------------------------


def launched(instances, running_at):
    """Gives each just-launched instance whose image has a config its agent (`running_at(id)`: the
    monotonic time a /timing instance runs, else None: now)."""
    now = time.monotonic()
    with LOCK:
        for instance in instances:
            config = STATE["configs"].get(instance.image_id) or STATE["configs"].get("*")
            if config is None:
                continue
            runs = running_at(instance.id) or now
            STATE["agents"][instance.id] = {
                "instance": instance,
                "config": config,
                "registers_at": None if config["online_s"] is None else runs + config["online_s"],
                "windows": [],  # (start, end) of each reboot's ConnectionLost
                "lost_since": None,  # when it was first seen stopped or stopping
                "back_at": None,  # when it was first seen running again after that
                "terminated_at": None,
            }


def rebooted(instances):
    """Commands due to start before the reboot start; then the agent is away for its window."""
    now = time.monotonic()
    with LOCK:
        for instance in instances:
            agent = STATE["agents"].get(instance.id)
            if agent is None:
                continue
            settle_instance(instance.id, now)
            agent["windows"].append((now, now + agent["config"]["offline_after_reboot_s"]))


def terminated(instance):
    """Commands due to start before the termination start; the pending ones become Undeliverable."""
    now = time.monotonic()
    with LOCK:
        agent = STATE["agents"].get(instance.id)
        if agent is None or agent["terminated_at"] is not None:
            return
        settle_instance(instance.id, now)
        agent["terminated_at"] = now
        settle_instance(instance.id, now)


def ping_status(agent, now):
    """(PingStatus, since: monotonic) of the agent now, or None while it is no managed instance."""
    state = agent["instance"]._state.name
    registers_at = agent["registers_at"]
    if registers_at is None or now < registers_at:
        return None
    if agent["terminated_at"] is not None:
        if now - agent["terminated_at"] >= FORGET_TERMINATED_S:
            return None
        return "ConnectionLost", agent["terminated_at"]
    if state == "pending" and not agent["windows"] and agent["lost_since"] is None:
        return None  # it never ran yet (/pending, /fate): no agent has started
    if state != "running":
        agent["lost_since"] = agent["lost_since"] or now
        return "ConnectionLost", agent["lost_since"]
    if agent["lost_since"] is not None:
        agent["lost_since"], agent["back_at"] = None, now
    since = max(registers_at, agent["back_at"] or registers_at)
    for start, end in agent["windows"]:
        if start <= now < end:
            return "ConnectionLost", start
        if end <= now:
            since = max(since, end)
    return "Online", since


def wall(monotonic):
    """Unix seconds of a monotonic time."""
    return time.time() - (time.monotonic() - monotonic)


def install(running_at):
    """Wraps moto's launch, reboot and termination (whatever wraps them already stays inside), and
    answers the Run Command calls. `running_at(instance_id)`: the launcher's /timing clock."""
    original_run, original_reboot = InstanceBackend.run_instances, InstanceBackend.reboot_instances
    original_terminate = Instance.terminate

    def run_instances(self, *args, **kwargs):
        reservation = original_run(self, *args, **kwargs)
        launched(reservation.instances, running_at)
        return reservation

    def reboot_instances(self, instance_ids):
        done = original_reboot(self, instance_ids)
        rebooted(done)  # the launcher's reboot answers the instances it really rebooted
        return done

    def terminate(self):
        terminated(self)
        return original_terminate(self)

    InstanceBackend.run_instances = run_instances
    InstanceBackend.reboot_instances = reboot_instances
    Instance.terminate = terminate
    for name, method in ANSWERS.items():
        setattr(SimpleSystemManagerResponse, name, method)


# --- invocations ---------------------------------------------------------------------------------


def settle_instance(instance_id, now):
    for command in STATE["commands"].values():
        invocation = command["invocations"].get(instance_id)
        if invocation is not None:
            settle(invocation, now)


def settle(invocation, now):
    """Starts a Pending invocation whose agent has been Online since it was due, or ends it when it
    cannot be delivered any more (LOCK held)."""
    if invocation["started_at"] is not None or invocation["ended"] is not None:
        return
    command, agent = invocation["command"], invocation["agent"]
    deadline = command["sent_at"] + command["timeout_s"]
    if agent["terminated_at"] is not None:
        invocation["ended"] = ("Failed", "Undeliverable", -1, agent["terminated_at"])
        return
    ping = ping_status(agent, now)
    if ping is not None and ping[0] == "Online":
        start = max(command["sent_at"] + agent["config"]["pending_s"], ping[1])
        if start <= now and start < deadline:
            invocation["started_at"] = start
            return
    if now >= deadline:
        invocation["ended"] = ("TimedOut", "DeliveryTimedOut", -1, deadline)


def progress(invocation, now):
    """(Status, StatusDetails, ResponseCode, started or None, ended or None) now (LOCK held, settled)."""
    if invocation["ended"] is not None:
        status, details, code, at = invocation["ended"]
        return status, details, code, None, at
    start = invocation["started_at"]
    if start is None:
        return "Pending", "Pending", -1, None, None
    outcome, limit = invocation["outcome"], invocation["command"]["execution_timeout_s"]
    if outcome["run_s"] > limit:
        end, final = start + limit, ("TimedOut", "ExecutionTimedOut", -1)
    else:
        code = outcome["exit_code"]
        end, final = start + outcome["run_s"], ("Success", "Success", 0) if code == 0 else ("Failed", "Failed", code)
    if now < end:
        return "InProgress", "InProgress", -1, start, None
    return (*final, start, end)


def outcome_of(config, commands):
    """What the commands print and exit with: the first `outputs` entry whose `contains` is in the
    joined commands, its missing keys from the config's defaults."""
    joined = "\n".join(commands)
    chosen = next((e for e in config["outputs"] if e["contains"] in joined), {})
    out = {k: chosen.get(k, config[k]) for k in ("stdout", "stderr", "exit_code")}
    out["run_s"] = config["run_s"]
    return out


def visible(invocation, now):
    return now - invocation["command"]["sent_at"] >= VISIBLE_AFTER_S


def ssm_time(monotonic):
    """GetCommandInvocation's date strings ("" until it happened)."""
    if monotonic is None:
        return ""
    stamp = wall(monotonic)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp)) + f".{int(stamp * 1000) % 1000:03d}Z"


# --- the requests --------------------------------------------------------------------------------


def request(self, action):
    """The request's JSON body, once SSM's model allows it; then IAM (the resources are in it)."""
    try:
        body = json.loads(self.body or "{}")
    except ValueError:
        raise JsonRESTError("SerializationException", "the request body is not JSON") from None
    if not isinstance(body, dict):
        raise JsonRESTError("SerializationException", "the request body is not a JSON object")
    refused = ssm_model.refusal(action, body)
    if refused:
        raise JsonRESTError(*refused)
    return body


def answer(payload):
    return json.dumps(payload)


def page(items, body, default_max):
    """(the page of `items` that MaxResults and NextToken ask for, the NextToken of the next or None)."""
    offset = 0
    token = body.get("NextToken")
    if token is not None:
        try:
            offset = int(json.loads(base64.b64decode(token, validate=True))["offset"])
        except (binascii.Error, ValueError, KeyError, TypeError):
            raise JsonRESTError("InvalidNextToken", "The specified token is not valid.") from None
    size = body.get("MaxResults", default_max)
    chunk = items[offset : offset + size]
    following = offset + size
    if following >= len(items):
        return chunk, None
    return chunk, base64.b64encode(json.dumps({"offset": following}).encode()).decode()


# --- DescribeInstanceInformation -----------------------------------------------------------------


def instance_information(agent, ping):
    instance, platform = agent["instance"], agent["config"]["platform"]
    name, version = PLATFORMS[platform]
    address = instance.private_ip or ""
    computer = f"EC2AMAZ-{instance.id[-7:].upper()}" if platform == "Windows" else instance.private_dns_name
    return {
        "InstanceId": instance.id,
        "PingStatus": ping[0],
        "LastPingDateTime": round(wall(ping[1]), 3),
        "AgentVersion": AGENT_VERSION,
        "IsLatestVersion": True,
        "PlatformType": platform,
        "PlatformName": name,
        "PlatformVersion": version,
        "ResourceType": "EC2Instance",
        "IPAddress": address,
        "ComputerName": computer,
    }


def bad_filter_value(message):
    return JsonRESTError("InvalidInstanceInformationFilterValue", message)


def filter_check(key, values):
    """SSM's refusals of a DescribeInstanceInformation filter: an unknown key, values out of place
    (the wording of the ResourceType ones is SSM's own)."""
    if key not in FILTER_KEYS and not key.startswith("tag:") and key != "tag-key":
        raise JsonRESTError("InvalidFilterKey", f"The filter key {key} is not valid.")
    if key not in FILTER_FIELDS:
        raise NotModelled(f"DescribeInstanceInformation's filter key {key}")
    if key == "InstanceIds":
        if len(values) > 50:
            raise bad_filter_value("InstanceIds filter may contain at most 50 values.")
        wrong = [v for v in values if not INSTANCE_ID.fullmatch(v)]
        if wrong:
            raise bad_filter_value(f"InstanceIds filter value {wrong[0]} is invalid.")
    elif key == "ResourceType":
        if len(values) != 1:
            raise bad_filter_value("ResourceType filter may contain only one value.")
        if values[0] not in ("EC2Instance", "ManagedInstance"):
            raise bad_filter_value("ResourceType filter is invalid, valid values are EC2Instance, ManagedInstance")
    elif key in FILTER_VALUES and set(values) - set(FILTER_VALUES[key]):
        raise bad_filter_value(f"{key} filter is invalid, valid values are {', '.join(FILTER_VALUES[key])}")


def matches(info, key, values):
    return info[FILTER_FIELDS[key]] in values


def describe_instance_information(self):
    body = request(self, "DescribeInstanceInformation")
    ssm_authz.authorize(self.region, "ssm:DescribeInstanceInformation", ["*"])
    # The older InstanceInformationFilterList is the same filters, spelled key/valueSet.
    filters = [{"Key": f["key"], "Values": f["valueSet"]} for f in body.get("InstanceInformationFilterList", [])]
    filters += body.get("Filters", [])
    for f in filters:
        filter_check(f["Key"], f["Values"])
    now = time.monotonic()
    with LOCK:
        listed = []
        for agent in STATE["agents"].values():
            ping = ping_status(agent, now)
            if ping is None or agent["instance"].ec2_backend.region_name != self.region:
                continue
            info = instance_information(agent, ping)
            if all(matches(info, f["Key"], f["Values"]) for f in filters):
                listed.append(info)
    chunk, token = page(listed, body, 50)
    return answer({"InstanceInformationList": chunk, **({"NextToken": token} if token else {})})


# --- SendCommand ---------------------------------------------------------------------------------


def document_of(name, region):
    """The document's short name, from a name or an ARN of it; InvalidDocument for another one."""
    short = name.rsplit("document/", 1)[-1] if name.startswith("arn:") else name
    if short not in DOCUMENTS or (name.startswith("arn:") and name != document_arn(region, short)):
        raise JsonRESTError("InvalidDocument", f"Document with name {name} does not exist.")
    return short


def document_arn(region, name):
    return f"arn:aws:ssm:{region}::document/{name}"


def instance_arn(region, instance_id):
    return f"arn:aws:ec2:{region}:{DEFAULT_ACCOUNT_ID}:instance/{instance_id}"


def send_command_resources(region, body):
    """What IAM authorizes ssm:SendCommand on: the document, then each instance."""
    name = body["DocumentName"]
    document = name if name.startswith("arn:") else document_arn(region, name)
    return [document, *(instance_arn(region, i) for i in body.get("InstanceIds", []))]


def instance_tags(region, body):
    """{instance ARN: its tags} of the instances a SendCommand names, as moto's EC2 keeps them."""
    from moto.ec2.models import ec2_backends

    backend = ec2_backends[DEFAULT_ACCOUNT_ID][region]
    return {instance_arn(region, i): dict(backend.tags.get(i) or {}) for i in body.get("InstanceIds", [])}


def parameters_of(body):
    """(commands, executionTimeout seconds) of the document's Parameters; InvalidParameters else."""
    parameters = body.get("Parameters") or {}
    unknown = [name for name in parameters if name not in DOCUMENT_PARAMETERS]
    if unknown:
        raise JsonRESTError("InvalidParameters", f'Parameter "{unknown[0]}" is not a valid parameter for the document.')
    commands = parameters.get("commands")
    if not commands or not all(isinstance(c, str) for c in commands):
        raise JsonRESTError("InvalidParameters", 'Parameter "commands" is required and must not be empty.')
    if len(parameters.get("workingDirectory", [])) > 1:
        raise JsonRESTError("InvalidParameters", 'Parameter "workingDirectory" takes one value.')
    timeout = parameters.get("executionTimeout", [str(DEFAULT_TIMEOUT_S)])
    if len(timeout) != 1 or not re.fullmatch(r"[0-9]+", timeout[0]) or not 1 <= int(timeout[0]) <= 172800:
        message = f'Parameter "executionTimeout" {timeout} must be one number of seconds from 1 to 172800.'
        raise JsonRESTError("InvalidParameters", message)
    return list(commands), int(timeout[0])


def target_agents(ids, region, platform, document, now):
    """The agents of the instances named (LOCK held): InvalidInstanceId for those that are no valid
    managed instance, then UnsupportedPlatformType for a document of another platform."""
    agents, invalid = {}, []
    for instance_id in ids:
        agent = STATE["agents"].get(instance_id)
        ok = (
            agent is not None
            and ping_status(agent, now) is not None
            and agent["terminated_at"] is None
            and agent["instance"]._state.name not in ("shutting-down", "terminated")
            and agent["instance"].ec2_backend.region_name == region
        )
        if ok:
            agents[instance_id] = agent
        else:
            invalid.append(instance_id)
    if invalid:
        message = f"Instances [[{', '.join(invalid)}]] not in a valid state for account {DEFAULT_ACCOUNT_ID}"
        raise JsonRESTError("InvalidInstanceId", message)
    for instance_id, agent in agents.items():
        if agent["config"]["platform"] != platform:
            message = f"The document {document} is not supported on platform {agent['config']['platform']} ({instance_id})."
            raise JsonRESTError("UnsupportedPlatformType", message)
    return agents


def send_command(self):
    body = request(self, "SendCommand")
    resources = send_command_resources(self.region, body)
    ssm_authz.authorize(self.region, "ssm:SendCommand", resources, instance_tags(self.region, body))
    ids = body.get("InstanceIds") or []
    if body.get("Targets"):
        raise NotModelled("SendCommand's Targets")
    if not ids:
        message = (
            "1 validation error detected: Value '[]' at 'instanceIds' failed to satisfy constraint: Member must "
            "have length greater than or equal to 1"
        )
        raise JsonRESTError("ValidationException", message)
    if len(set(ids)) != len(ids):
        raise JsonRESTError("DuplicateInstanceId", "Instance IDs must be unique.")
    document = document_of(body["DocumentName"], self.region)
    if body.get("DocumentVersion", "$DEFAULT") not in ("$DEFAULT", "$LATEST", "1"):
        raise JsonRESTError("InvalidDocumentVersion", f"Document version {body['DocumentVersion']} does not exist.")
    commands, execution_timeout = parameters_of(body)
    platform, _ = DOCUMENTS[document]
    now = time.monotonic()
    with LOCK:
        agents = target_agents(ids, self.region, platform, document, now)
        command = {
            "id": str(uuid.uuid4()),
            "document": document,
            "commands": commands,
            "comment": body.get("Comment", ""),
            "parameters": body.get("Parameters"),
            "sent_at": now,
            "timeout_s": body.get("TimeoutSeconds", DEFAULT_TIMEOUT_S),
            "execution_timeout_s": execution_timeout,
            "invocations": {},
        }
        for instance_id, agent in agents.items():
            command["invocations"][instance_id] = {
                "command": command,
                "agent": agent,
                "outcome": outcome_of(agent["config"], commands),
                "started_at": None,
                "ended": None,
            }
        STATE["commands"][command["id"]] = command
    return answer({"Command": command_view(command)})


def command_view(command):
    sent = wall(command["sent_at"])
    return {
        "CommandId": command["id"],
        "DocumentName": command["document"],
        "DocumentVersion": "$DEFAULT",
        "Comment": command["comment"],
        "ExpiresAfter": round(sent + command["timeout_s"], 3),
        "Parameters": command["parameters"],
        "InstanceIds": list(command["invocations"]),
        "Targets": [],
        "RequestedDateTime": round(sent, 3),
        "Status": "Pending",
        "StatusDetails": "Pending",
        "OutputS3Region": "",
        "OutputS3BucketName": "",
        "OutputS3KeyPrefix": "",
        "MaxConcurrency": "50",
        "MaxErrors": "0",
        "TargetCount": len(command["invocations"]),
        "CompletedCount": 0,
        "ErrorCount": 0,
        "DeliveryTimedOutCount": 0,
        "ServiceRole": "",
        "NotificationConfig": {"NotificationArn": "", "NotificationEvents": [], "NotificationType": ""},
        "CloudWatchOutputConfig": {"CloudWatchLogGroupName": "", "CloudWatchOutputEnabled": False},
        "TimeoutSeconds": command["timeout_s"],
    }


# --- GetCommandInvocation, ListCommandInvocations ------------------------------------------------


def visible_invocation(command_id, instance_id, now):
    """The invocation, settled, or InvocationDoesNotExist (unknown, or sent too recently) (LOCK held)."""
    command = STATE["commands"].get(command_id)
    invocation = command and command["invocations"].get(instance_id)
    if invocation is None or not visible(invocation, now):
        raise JsonRESTError("InvocationDoesNotExist", "")
    settle(invocation, now)
    return invocation


def get_command_invocation(self):
    body = request(self, "GetCommandInvocation")
    ssm_authz.authorize(self.region, "ssm:GetCommandInvocation", ["*"])
    now = time.monotonic()
    with LOCK:
        invocation = visible_invocation(body["CommandId"], body["InstanceId"], now)
        command = invocation["command"]
        plugin = DOCUMENTS[command["document"]][1]
        if body.get("PluginName", plugin) != plugin:
            raise JsonRESTError("InvalidPluginName", f"Plugin {body['PluginName']} is not in the document.")
        status, details, code, start, end = progress(invocation, now)
    outcome = invocation["outcome"] if end is not None and start is not None else {"stdout": "", "stderr": ""}
    return answer(
        {
            "CommandId": command["id"],
            "InstanceId": body["InstanceId"],
            "Comment": command["comment"],
            "DocumentName": command["document"],
            "DocumentVersion": "$DEFAULT",
            "PluginName": plugin,
            "ResponseCode": code,
            "ExecutionStartDateTime": ssm_time(start),
            "ExecutionElapsedTime": f"PT{(end or now) - start:.3f}S" if start is not None else "",
            "ExecutionEndDateTime": ssm_time(end),
            "Status": status,
            "StatusDetails": details,
            "StandardOutputContent": outcome["stdout"][:STDOUT_MAX],
            "StandardOutputUrl": "",
            "StandardErrorContent": outcome["stderr"][:STDERR_MAX],
            "StandardErrorUrl": "",
            "CloudWatchOutputConfig": {"CloudWatchLogGroupName": "", "CloudWatchOutputEnabled": False},
        }
    )


def invocation_entry(invocation, details, now):
    """A ListCommandInvocations entry (LOCK held, settled); with Details, its one plugin."""
    command, instance = invocation["command"], invocation["agent"]["instance"]
    status, status_details, code, start, end = progress(invocation, now)
    entry = {
        "CommandId": command["id"],
        "InstanceId": instance.id,
        "InstanceName": "",
        "Comment": command["comment"],
        "DocumentName": command["document"],
        "DocumentVersion": "$DEFAULT",
        "RequestedDateTime": round(wall(command["sent_at"]), 3),
        "Status": status,
        "StatusDetails": status_details,
        "TraceOutput": "",
        "StandardOutputUrl": "",
        "StandardErrorUrl": "",
        "CommandPlugins": [],
        "ServiceRole": "",
        "NotificationConfig": {"NotificationArn": "", "NotificationEvents": [], "NotificationType": ""},
        "CloudWatchOutputConfig": {"CloudWatchLogGroupName": "", "CloudWatchOutputEnabled": False},
    }
    if details:
        ended = end is not None and start is not None
        plugin = {"Name": DOCUMENTS[command["document"]][1], "Status": status, "StatusDetails": status_details}
        plugin["ResponseCode"] = code
        if start is not None:
            plugin["ResponseStartDateTime"] = round(wall(start), 3)
        if end is not None:
            plugin["ResponseFinishDateTime"] = round(wall(end), 3)
        plugin["Output"] = invocation["outcome"]["stdout"][:DETAILS_OUTPUT_MAX] if ended else ""
        entry["CommandPlugins"] = [plugin]
    return entry


def list_command_invocations(self):
    body = request(self, "ListCommandInvocations")
    ssm_authz.authorize(self.region, "ssm:ListCommandInvocations", ["*"])
    if body.get("Filters"):
        raise NotModelled("ListCommandInvocations' Filters")
    now = time.monotonic()
    with LOCK:
        if "CommandId" in body:
            command = STATE["commands"].get(body["CommandId"])
            if command is None:
                raise JsonRESTError("InvalidCommandId", "")
            commands = [command]
        else:
            commands = list(STATE["commands"].values())
        entries = []
        for command in commands:
            for instance_id, invocation in command["invocations"].items():
                if body.get("InstanceId", instance_id) != instance_id or not visible(invocation, now):
                    continue
                settle(invocation, now)
                entries.append(invocation_entry(invocation, bool(body.get("Details")), now))
    chunk, token = page(entries, body, 50)
    return answer({"CommandInvocations": chunk, **({"NextToken": token} if token else {})})


# The methods of SimpleSystemManagerResponse that `install` replaces.
ANSWERS = {
    "describe_instance_information": describe_instance_information,
    "send_command": send_command,
    "get_command_invocation": get_command_invocation,
    "list_command_invocations": list_command_invocations,
}
