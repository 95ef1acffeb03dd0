"""moto's EC2 server on loopback, extended with what the amiprobe tests need and moto lacks.

    python moto_launcher.py --port P --control-port C
    python moto_launcher.py --self-test      # starts one on free loopback ports, checks every feature

Starts moto in-process (ThreadedMotoServer) on 127.0.0.1:P and a small control API on 127.0.0.1:C:

  POST /fault    {"action": "RunInstances", "code": "...", "status": 500, "count": 1,
                  "when": {"InstanceType": "t3.micro"}}      the next `count` matching calls fail
  POST /fault    {"action": "ssm:SendCommand", "code": "ThrottlingException", "status": 400}
                                       an SSM action fails the same way, named exactly ("*" is EC2's
                                       calls only), answered in SSM's JSON error shape; `when` compares
                                       the JSON body's top-level members
  POST /fault    {"clear": true}      drops the faults not yet used up (EC2 recovers)
  POST /pending  {"describes": N}       instances launched from now on stay `pending` for N describes
  POST /console  {"text": "...", "after_reboot": "...", "instance_id": optional}
                                       console output (default for all, or one); either key may be left
                                       out. `after_reboot` is appended verbatim to the instance's console
                                       output once per reboot of it, once that reboot is over (at once for
                                       an instance launched without /timing, `reboot_s` after the
                                       RebootInstances for a timed one): the console shows every boot;
                                       null clears it
  POST /throttle {"enabled": true}     throttle like EC2: a token bucket per API action, sized by its
                                       class at EC2's published rates (Describe*/Get* 100 + 20/s,
                                       unfiltered unpaginated DescribeInstances 50 + 10/s, RunInstances
                                       5 + 2/s, TerminateInstances 100 + 5/s, other mutating calls 50 +
                                       5/s), plus EC2's resource buckets (instances launched 1000 + 2/s,
                                       terminated 1000 + 20/s), answering RequestLimitExceeded (503) when
                                       one is short; works together with everything else here
  POST /latency  {"RunInstances": 1.0, "*": 0.05, "jitter": 0.2}
                                       each call of an action sleeps that long (+- jitter share) first;
                                       "*" is for the actions not named; {} turns it off
  POST /consistency {"key_pair": 1.0, "instance": 1.0}
                                       for that long after its creation a key pair (instance) named in a
                                       call is InvalidKeyPair.NotFound (InvalidInstanceID.NotFound), and
                                       listings without names leave it out; 0 turns a window off
  POST /chaos    {"rate": 0.05, "seed": 42, "after_rate": 0.5, "actions": ["*"],
                  "codes": [["InternalError", 500], ["Unavailable", 503]]}
                                       each matching call fails with probability `rate` (seeded): a share
                                       `after_rate` of the failures happen after the action took effect
                                       (a lost response); rate 0 turns it off
  POST /status   {"instance_id": optional, "system": "impaired", "instance": "ok"}
                                       what DescribeInstanceStatus answers for running instances (all,
                                       or one): a check given as "impaired" fails its reachability
                                       detail; left out, a check is moto's own (`ok`, reachability
                                       passed, for running instances; `not-applicable` otherwise)
  POST /shutting_down {"seconds": N}   terminated instances stay `shutting-down` N seconds (and keep
                                       their security groups: DeleteSecurityGroup answers
                                       DependencyViolation until they are `terminated`, as EC2 does)
  POST /timing   {"boot_s": [20, 40], "service_s": [1, 3], "shutting_down_s": [10, 30], "seed": 1,
                  "port": 80, "rdp_port": 3389, "rdp_mute": false, "reboot_s": 5,
                  "drop_until_service": false}
                                       EC2's own pace, per instance launched from now on: a pair is a
                                       uniform range (drawn from an RNG seeded with `seed`), a number is
                                       fixed. Each instance is `pending` for its boot time (wall clock from
                                       its RunInstances), then `running`; after its service time too, a
                                       service answers `200 ok` to HTTP on its own address and `port`
                                       (before: nothing listens, connections are refused). Each instance
                                       has an address of its own, 127.A.B.C from a counter (never
                                       127.0.0.1: all of 127.0.0.0/8 is loopback on Linux), as both
                                       PublicIpAddress and PrivateIpAddress. TerminateInstances stops its
                                       service and keeps it `shutting-down` for its own shutting-down time
                                       (without `shutting_down_s`: /shutting_down's seconds). With
                                       `rdp_port` (optional, != `port`), the instance's address also
                                       listens there from the same service time and answers an RDP
                                       connection request as a Windows host does (bytes below); with
                                       `rdp_mute` true as well, that port accepts connections but never
                                       answers (an open port that is not RDP). RebootInstances of a
                                       running timed instance takes its services (HTTP and RDP) down at
                                       once, open connections included, for its reboot time `reboot_s`
                                       (pair or number, drawn per instance from a second RNG seeded with
                                       `seed`, so the other draws stay those of the same seed; default 5):
                                       connections are refused meanwhile, then they come back (not before
                                       its first service time). The instance stays `running` throughout, as
                                       on EC2. With `drop_until_service` true, every packet to the address
                                       of an instance launched from now on is dropped, unanswered, from
                                       its RunInstances until its service time (as EC2 drops packets to
                                       an instance whose OS and network are not up yet): a connect there
                                       hangs, its SYN retransmitted by the client's kernel (Linux since
                                       6.5: 1 s apart 4 times, then doubling, tcp_syn_linear_timeouts;
                                       before: after 1 s, 3 s, 7 s...), and reaches the service only with
                                       the first retransmission after its service time, while a new
                                       connect then goes straight through; from then on, as without the
                                       option (a
                                       terminated instance's address stops dropping at once; a reboot
                                       refuses, it does not drop). Done with nftables in the launcher's
                                       own network namespace (table `inet amiprobe_launcher`, a set of the
                                       dropped addresses, an input-hook rule), so it is refused (400)
                                       unless that namespace has only `lo` (and is not init's) and `nft`
                                       works: it never touches a host's own firewall. {} turns it off for
                                       later launches
  GET  /timeline                       per instance launched under /timing: {"launched", "running_at",
                                        "service_at", "first_answered_at", "terminate_requested_at",
                                        "terminated_at"} in seconds since the last reset (monotonic; null
                                       until it happened, or when it never will; "first_answered_at":
                                       when its HTTP service first sent its `200`), the drawn "boot_s",
                                       "service_s", "shutting_down_s" and "reboot_s", its "address",
                                       "port" and "rdp_port" (null without one), "drop_until_service" (the
                                       option it was launched under), and "reboots": [t, ...], when each
                                       RebootInstances that took effect on it was called
  POST /windows  {"password_s": 0, "password": null, "wrong_key": false}
                                       the Administrator password of Windows instances (launched from an
                                       AMI whose platform is `windows`, e.g. one from /image) launched from
                                       now on, as EC2Launch sets it: `password` (default: 32 random
                                       characters, new per instance) is encrypted with RSA PKCS#1 v1.5 to
                                       the public key of the instance's key pair as it was at RunInstances
                                       (imported in OpenSSH `ssh-rsa` form or made by CreateKeyPair), or,
                                       with `wrong_key`, to another RSA key (a client's decryption fails).
                                       GetPasswordData answers PasswordData "" until `password_s` seconds
                                       after the instance is `running` (its boot time under /timing; its
                                       first `running` describe under /pending), then CR LF + base64 of
                                       the ciphertext + CR LF, as EC2 does (a client strips the whitespace
                                       before decoding). Always "": a non-Windows instance, one launched
                                       without a key pair, and one whose key pair is ed25519 (EC2 refuses
                                       such a launch, and so does the launcher but for the oracle, whose
                                       instance never has a password). Applies
                                       with or without /timing; {} restores the defaults. Mind that moto's
                                       built-in ami-03cf127a is a Windows one (Server 2016 Nano)
  GET  /windows                        {"i-...": "the plaintext password", ...} for every instance that has
                                       one (ready or not yet)
  POST /image    {"architecture": "arm64", "boot_mode": "uefi", "ena_support": true,
                  "root_device_name": "/dev/xvda", "platform": null, "state": "available", "name": "..."}
                                       registers an AMI with these attributes (moto's RegisterImage keeps
                                       none of them) and answers {"image_id": "ami-..."}; left out, each
                                       is what RegisterImage records without it: x86_64, no boot mode,
                                       no ENA, /dev/xvda, available. "owner_id": "111122223333" makes it
                                       another account's (shared) image; "encrypted": true gives its
                                       EBS mappings `Encrypted` and that owner's `KmsKeyId` (fate.py)
  POST /fate     {"image_id": "ami-...", "after": "pending", "delay_s": 1, "state": "terminated",
                  "code": "Client.InternalError", "message": "Client.InternalError: Client error on launch"}
                                       instances launched from now on from that image end on their own,
                                       as EC2 ends them, `delay_s` after their RunInstances: held
                                       `pending` until then ("after": "pending") or once `running`
                                       ("running"), then `terminated` or `stopped` with that StateReason
                                       (e.g. Client.InstanceInitiatedShutdown for a guest powering off);
                                       "code": null drops the image's fate (fate.py says more)
  POST /agent    {"image_id": "ami-...", "online_s": 3, "platform": "Linux", "pending_s": 0.5,
                  "run_s": 1.0, "stdout": "", "stderr": "", "exit_code": 0,
                  "outputs": [{"contains": "exit 3", "stdout": "...", "stderr": "...", "exit_code": 3}],
                  "offline_after_reboot_s": 5}
                                       SSM Run Command (ssm_run.py says more): instances launched from
                                       now on from that image (every image without a config of its
                                       own: no image_id) get an SSM agent of that `platform` (Linux or
                                       Windows), which registers `online_s` after the instance is
                                       `running` (under /timing: after its boot time; otherwise after
                                       RunInstances) and never with "online_s": null (the instance is
                                       then no managed instance: absent from DescribeInstanceInformation,
                                       InvalidInstanceId to SendCommand). A command is Pending
                                       `pending_s` (and until the agent is Online), InProgress `run_s`,
                                       then Success (exit code 0) or Failed with that ResponseCode; its
                                       output is the first `outputs` entry whose `contains` is in the
                                       commands joined by newlines, each key missing there taken from
                                       the defaults beside it (stdout may be long: SSM cuts it at
                                       24,000 characters, stderr at 8,000). RebootInstances makes the
                                       agent ConnectionLost for `offline_after_reboot_s`, then Online
                                       with a new LastPingDateTime; commands sent meanwhile wait Pending
                                       (TimedOut/DeliveryTimedOut after TimeoutSeconds). Terminated: the
                                       agent ConnectionLost for 5 s, then absent; invocations not yet
                                       started Failed/Undeliverable. Each key left out takes the value
                                       shown. An instance keeps the config it was launched under;
                                       {"clear": true} drops every config (later launches get no agent)
  GET  /agent                          {"commands": [{"command_id", "instance_ids", "document",
                                        "commands": [...]}], "configs": {image id or "*": config},
                                        "agents": {"i-...": {"ping_status": "Online" | "ConnectionLost"
                                        | null, "platform"}}}: every SendCommand SSM accepted, in order
                                       (how many calls carried how many instances), and the agents now
  GET  /calls                          {"Action": count, ..., "fault:Action": n, "consistency:Action": n,
                                        "chaos:Action": n, "dependency:DeleteSecurityGroup": n,
                                        "throttled": n, "throttled:Action": n} since the last reset;
                                       every SSM call as "ssm:Action" ("ssm:SendCommand", also
                                       "ssm:GetParameter"...), refused or not, and "fault:ssm:Action"
  GET  /requests?action=RunInstances   every call of that action (all calls without `action`) since the
                                       last reset, in order: its query parameters flattened, name -> value
                                       ("InstanceType": "t3.micro", "SecurityGroupId.1": "sg-1", ...),
                                       and "_region": the region the call was signed for, "_access_key":
                                       the access key id it was signed with (Authorization's Credential=).
                                       SSM calls under "ssm:Action" (?action=ssm:SendCommand): their JSON
                                       body kept as sent, not flattened ("InstanceIds": [...],
                                       "Parameters": {"commands": [...]}), with "Action": "ssm:SendCommand",
                                       "_region" and "_access_key"
  POST /sts      {"session_s": 20, "external_id": "x"}
                                       AssumeRole's sessions last session_s whatever DurationSeconds asked
                                       (STS's least is 900: a test sees renewals within seconds), and it
                                       answers AccessDenied unless ExternalId is external_id (null: any);
                                       each knob kept when absent (sts.py says more)
  GET  /sts                            {"sessions": [{"access_key", "expires"}], "expired_uses": [{"action",
                                       "access_key", "late_s"}], "calls": [{"action", "access_key"}]}:
                                       AssumeRole's sessions (expires: Unix seconds), every call signed
                                       with one after it ended, and every STS call ("sts:AssumeRole"...)
  POST /deny     {"actions": ["ec2:CreateTags", "sts:DecodeAuthorizationMessage", ...]}
                                       IAM as a role lacking these actions: an EC2 call needing one answers
                                       UnauthorizedOperation (403) with an encoded authorization failure
                                       message, DryRun or not, and does nothing. A call needs `ec2:` +
                                       its action, and `ec2:CreateTags` too when it tags what it creates
                                       (TagSpecification.N, as EC2's tag-on-create does); the encoded
                                       message names the first denied one. {"actions": []} allows all
  POST /policy   {"document": {"Version": "2012-10-17", "Statement": [...]}}
                                       IAM as a caller holding exactly this identity policy: each EC2 call
                                       (DryRun or not) becomes the checks EC2 authorizes it with (IAM
                                       action, resource ARN, request context: see ec2_authz.py) and each
                                       is evaluated as IAM does (iam_policy.py); a call whose checks are
                                       not all allowed answers UnauthorizedOperation as /deny does, its
                                       encoded message naming the first refused action and its resource,
                                       and does nothing; sts:DecodeAuthorizationMessage is checked too
                                       (AccessDenied), and so is SSM's PutParameter (`ssm:PutParameter` on
                                       the parameter's ARN; /deny may name it too), refused with
                                       AccessDeniedException before moto writes (ssm_authz.py), and so
                                       are Run Command's calls (ssm:SendCommand on the document's ARN
                                       arn:aws:ssm:REGION::document/NAME and each instance's
                                       arn:aws:ec2:REGION:ACCOUNT:instance/ID; ssm:GetCommandInvocation,
                                       ssm:ListCommandInvocations, ssm:DescribeInstanceInformation on
                                       "*"; /deny may name any of them). Works beside
                                       /deny; {"document": null} turns it off
  POST /reset                          clears all of the above and moto's state (no address stays
                                       dropped)

DryRun (any EC2 call with DryRun=true): answered DryRunOperation (412, EC2's error shape) when it is
allowed, UnauthorizedOperation when /deny or /policy refuses it, and nothing is done either way (moto itself
ignores DryRun for some calls). A DryRun call is counted in /calls and kept in /requests as
"dryrun:Action", never as "Action": what was really called stays apart from what was asked about.
STS DecodeAuthorizationMessage (moto has none) decodes the messages above into EC2's JSON document
({"allowed": false, "context": {"action": "ec2:CreateTags", "resource": "...", ...}, ...}), unless
/deny or /policy refuses `sts:DecodeAuthorizationMessage` (AccessDenied, 403); any other message is
InvalidAuthorizationMessageException (400).

RDP (rdp_port): the client sends an X.224 Connection Request in a TPKT: 03 00 LL LL (LL LL: the
whole PDU's length, big-endian, at least 11), LI (= length - 5), E0 (CR; the low nibble is ignored),
dst-ref 2 bytes, src-ref 2 bytes, class 1 byte, then optionally a cookie or routing token ("Cookie:
mstshash=..." or "Cookie: msts=...", ending in 0D 0A), then optionally an RDP_NEG_REQ: 01, flags,
08 00, requestedProtocols (u32, little-endian).
The answer is the X.224 Connection Confirm, then the connection is closed:
  with an RDP_NEG_REQ:    03 00 00 13  0E D0 00 00 12 34 00  02 00 08 00 SS 00 00 00
                          (RDP_NEG_RSP, flags 0; selectedProtocol SS = 01 PROTOCOL_SSL when the
                          request's bit 0x1 is set, else 00 PROTOCOL_RDP)
  without one:            03 00 00 0B  06 D0 00 00 12 34 00   (MS-RDPBCGR: no negotiation data then)
Anything else (another first byte or TPDU code, an inconsistent length or LI, over 4096 bytes) is
answered by closing the connection; so is a connection closed before a whole request arrived.

RebootInstances: moto marks any instance `running` on reboot; here, as EC2 says ("requests to reboot
terminated instances are ignored"), only `running` instances are rebooted, the others are left as they
are (pending and shutting-down ones too).

Additions to moto's EC2: GetConsoleScreenshot answers with a real JPEG (a frame drawn per call),
GetConsoleOutput with the text set above, GetPasswordData with /windows' encrypted password (moto
answers 128 random characters for any Windows instance), faults with a real EC2 error body and HTTP
status, instances held pending, RunInstances honouring ClientToken as EC2 does (a retry gets the first answer back), and
DescribeImages failing the whole call with InvalidAMIID.NotFound when one of its ImageIds is unknown, as
EC2 does (moto answers with the ones it knows), and RunInstances creating its block devices with the
Iops and Throughput they ask for (moto drops both, and so refuses every io1 and io2 volume). moto's built-in AMIs copy real ones but report UEFI, the
default of its constructor: here they report no boot mode, as their data has none, and ENA enabled, as
the current AMIs they copy do.
Requests EC2 refuses and moto takes (ec2_rules.py): every EC2 call not signed by the oracle, DryRun
calls too, is checked against EC2's API model (botocore's: unknown parameters, required members,
enums, number ranges, string and list lengths, patterns) and EC2's documented cross-field rules (tag
sets: unique keys, key <= 128 and value <= 256 characters, <= 50 tags, no `aws:` prefix in any case,
each tag specification of a resource type the call creates, once;
network interfaces vs instance-level subnet and groups; AssociatePublicIpAddress on DeviceIndex 0 of a
single interface; IMDS hop limit 1-64 and tag keys fit for instance tags in the metadata; EBS type vs IOPS, throughput and size; ids together with
MaxResults; <= 200 values per filter and the documented ids per call; RunInstances counts and user
data; ImportKeyPair key types and sizes; no ed25519 key pair on a Windows image; names, descriptions
and client tokens within what their documentation states). The first violation
is answered as EC2 does (MissingParameter, UnknownParameter, InvalidParameterValue,
InvalidParameterCombination, InvalidParameterDependency, FilterLimitExceeded, TagLimitExceeded,
InvalidKey.Format; HTTP 400), counted as "refused:Action" in /calls, kept in /requests, printed on
the launcher's stderr, and moto never sees the call.
SSM Run Command (ssm_run.py, /agent): DescribeInstanceInformation, SendCommand, GetCommandInvocation and
ListCommandInvocations are answered as SSM answers them (moto's own accept anything and run nothing):
each request is checked against SSM's API model (ssm_model.py: lengths, ranges, patterns, enums,
required members; ValidationException), then /deny and /policy, then SSM's own rules (InvalidFilterKey,
InvalidInstanceInformationFilterValue, InvalidDocument, InvalidParameters, InvalidInstanceId,
UnsupportedPlatformType, DuplicateInstanceId, InvocationDoesNotExist for the first 0.5 s after
SendCommand...), all HTTP 400 in SSM's JSON error shape. The oracle key skips none of it.
Calls signed with the access key `oracle` (the tests' own client, Moto::client) skip the EC2 rules, latency,
consistency windows and chaos: the tests' view of what exists is the truth. Everything listens on
127.0.0.1 only, except the timed instances' services, each on its own loopback address.
"""

import argparse
import base64
import copy
import io
import json
import logging
import os
import heapq
import itertools
import random
import re
import resource
import secrets
import selectors
import socket
import string
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives.asymmetric import padding, rsa
from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.responses import ActionResult
from moto.ec2.exceptions import InvalidAMIIdError
from moto.ec2.models import ec2_backends
from moto.ec2.models.amis import Ami, AmiBackend
from moto.ec2.models.instances import Instance, InstanceBackend
from moto.ec2.responses import EC2Response
from moto.ec2.utils import public_key_parse
from moto.iam.models import iam_backends
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.ssm.responses import SimpleSystemManagerResponse
from moto.sts.responses import TokenResponse
from PIL import Image, ImageDraw

import ec2_authz  # next to this file: /policy's EC2 authorization checks
import ec2_rules  # next to this file
import fate  # next to this file: /fate, and /image's owner_id and encrypted
import iam_policy  # next to this file: /policy's IAM evaluation
import ssm_authz  # next to this file: /deny and /policy for SSM PutParameter and Run Command
import ssm_run  # next to this file: /agent, SSM Run Command and the managed instances' agents
import sts  # next to this file: /sts, AssumeRole's sessions, each call's `_access_key`

LOCK = threading.Lock()
STATE = {
    "faults": [],  # [{"action", "code", "status", "count", "when"}]
    "calls": Counter(),
    "pending_describes": 0,
    "pending": {},  # instance id -> describes left
    "seen": set(),
    "console": {},  # instance id -> text
    "console_after": {},  # instance id -> text appended once per reboot (see /console "after_reboot")
    "console_after_default": None,
    "reboots": {},  # instance id -> [monotonic time each reboot is over], every instance rebooted
    "password_cfg": {"password_s": 0.0, "password": None, "wrong_key": False},  # /windows
    "passwords": {},  # instance id -> {"password", "data", "password_s", "running_at"} (Windows instances)
    "console_default": "amiprobe test console\nbooting...\nhttpd: listening on :80\nami-test login: \n",
    "frames": Counter(),
    "throttle": None,  # class -> [tokens, last refill] when enabled
    "latency": {},  # action -> seconds, "*" -> default, "jitter" -> share
    "windows": {"key_pair": 0.0, "instance": 0.0},  # consistency window per kind, seconds
    "born": {"key_pair": {}, "instance": {}},  # kind -> name or id -> monotonic creation time
    "chaos": None,  # {"rate", "after_rate", "actions", "codes", "rng"} when on
    "shutting_down_s": 0.0,
    "shutting": {},  # instance id -> (instance, monotonic time it is terminated), kept until reset
    "tokens": {},  # RunInstances ClientToken -> (request params, first answer)
    "requests": [],  # (action, {param: value}) of every call, in order
    "status": {},  # instance id or "*" -> {"system": ..., "instance": ...} forced check statuses
    "timing": None,  # {"boot_s", "service_s", "shutting_down_s": (low, high), "rng", "port"} when on
    "timeline": {},  # instance id -> its record (see launch_timed), for the instances launched under /timing
    "booting": set(),  # ids of timed instances not yet past their boot time
    "epoch": time.monotonic(),  # the last reset: /timeline's seconds count from here
    "deny": set(),  # IAM actions refused (/deny)
    "policy": None,  # the identity policy the callers hold (/policy), None: every call allowed
}

# Calls signed with this access key (the tests' own client) see the truth: no latency, window or chaos.
ORACLE_KEY = "oracle"

# EC2's published per-account request limits, (burst, per second) per class. Since 2024 EC2 keeps one
# bucket per API action (a class gives its size and refill): a burst of DescribeInstances does not
# starve GetConsoleScreenshot. RunInstances and TerminateInstances keep the limits amiprobe's own
# defaults assume (spec RateLimitsSpec), which its client-side buckets are made to stay under.
RATES = {
    "describe": (100, 20.0),
    "describe_instances_unfiltered": (50, 10.0),
    "run_instances": (5, 2.0),
    "terminate_instances": (100, 5.0),
    "mutating": (50, 5.0),
}
# EC2's resource limits on top: each instance launched (terminated) takes a token from these, whatever
# the number of calls. (burst, per second), counted in instances.
RESOURCE_RATES = {
    "RunInstances": (1000, 2.0),
    "TerminateInstances": (1000, 20.0),
}


def rate_class(action, params):
    if action == "RunInstances":
        return "run_instances"
    if action == "TerminateInstances":
        return "terminate_instances"
    if action == "DescribeInstances" and not any(
        k.startswith(("Filter", "InstanceId", "MaxResults", "NextToken")) for k in params
    ):
        # Unfiltered and unpaginated: a smaller bucket (a paginated listing is a normal describe).
        return "describe_instances_unfiltered"
    if action.startswith(("Describe", "Get")):
        return "describe"
    return "mutating"


def resource_count(action, params):
    """How many resource tokens the call needs: instances asked for (MinCount: EC2 refuses a launch it
    cannot start at least that many of), or instances named."""
    if action == "RunInstances":
        return int(params.get("MinCount", ["1"])[0])
    if action == "TerminateInstances":
        return sum(1 for k in params if NAMING["instance"].fullmatch(k))
    return 0


def take(buckets, key, burst, rate, n, now):
    """Takes n tokens from a bucket refilled up to `now`; False (and nothing taken) when it lacks them."""
    tokens, last = buckets.setdefault(key, [float(burst), now])
    tokens = min(float(burst), tokens + (now - last) * rate)
    if tokens < n:
        buckets[key] = [tokens, now]
        return False
    buckets[key] = [tokens - n, now]
    return True


def throttled(action, params):
    """Takes a token from the action's bucket (and resource tokens where EC2 counts them); True when one
    is short (EC2 answers RequestLimitExceeded). Counted as "throttled" and "throttled:Action"."""
    with LOCK:
        buckets = STATE["throttle"]
        if buckets is None:
            return False
        now = time.monotonic()
        burst, rate = RATES[rate_class(action, params)]
        ok = take(buckets, ("request", action), burst, rate, 1, now)
        n = resource_count(action, params)
        if ok and n and action in RESOURCE_RATES:
            burst, rate = RESOURCE_RATES[action]
            if not take(buckets, ("resource", action), burst, rate, n, now):
                # EC2 refuses the launch as a whole; the request token stays spent, as there.
                ok = False
        if not ok:
            STATE["calls"]["throttled"] += 1
            STATE["calls"][f"throttled:{action}"] += 1
        return not ok


def reset_state():
    with LOCK:
        STATE["faults"].clear()
        STATE["calls"].clear()
        STATE["pending_describes"] = 0
        STATE["pending"].clear()
        STATE["seen"].clear()
        STATE["console"].clear()
        STATE["console_after"].clear()
        STATE["console_after_default"] = None
        STATE["reboots"].clear()
        STATE["password_cfg"] = {"password_s": 0.0, "password": None, "wrong_key": False}
        STATE["passwords"].clear()
        STATE["frames"].clear()
        STATE["throttle"] = None
        STATE["latency"] = {}
        STATE["windows"] = {"key_pair": 0.0, "instance": 0.0}
        STATE["born"] = {"key_pair": {}, "instance": {}}
        STATE["chaos"] = None
        STATE["shutting_down_s"] = 0.0
        STATE["shutting"].clear()
        STATE["tokens"].clear()
        STATE["requests"].clear()
        STATE["status"].clear()
        STATE["timing"] = None
        STATE["timeline"].clear()
        STATE["booting"].clear()
        STATE["epoch"] = time.monotonic()
        STATE["deny"] = set()
        STATE["policy"] = None
    fate.reset()
    sts.reset()
    ssm_run.reset()
    SERVICES.close_all()
    DROPS.flush()


def error_body(code, message):
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors>"
        f"<RequestID>{uuid.uuid4()}</RequestID></Response>"
    )


def take_fault(action, params, wildcard=True):
    """The /fault the call meets, if any: its action's, or "*" (EC2 calls only: `wildcard`)."""
    with LOCK:
        for fault in STATE["faults"]:
            if fault["count"] <= 0 or fault["action"] not in ((action, "*") if wildcard else (action,)):
                continue
            when = fault.get("when") or {}
            if all(params.get(k, [None])[0] == v for k, v in when.items()):
                fault["count"] -= 1
                return fault
    return None


def is_oracle(self):
    """Whether the call is signed with ORACLE_KEY (read here: moto only knows AKIA-style keys)."""
    return f"Credential={ORACLE_KEY}/" in self.headers.get("Authorization", "")


def delay(action):
    """Sleeps like EC2 takes its time (RunInstances about a second); other requests go on meanwhile."""
    with LOCK:
        latency = STATE["latency"]
        seconds = float(latency.get(action, latency.get("*", 0.0)))
        jitter = float(latency.get("jitter", 0.0))
    if seconds > 0:
        time.sleep(max(0.0, seconds * (1 + random.uniform(-jitter, jitter))))


# Parameters that name a resource, whatever the action: KeyName, KeyName.1, InstanceId.2, ResourceId.1...
NAMING = {
    "key_pair": re.compile(r"(KeyName|KeyPairId)(\.\d+)?"),
    "instance": re.compile(r"(InstanceId|ResourceId)(\.\d+)?"),
}
NOT_FOUND = {
    "key_pair": ("InvalidKeyPair.NotFound", "The key pair '{}' does not exist"),
    "instance": ("InvalidInstanceID.NotFound", "The instance ID '{}' does not exist"),
}


def in_window(kind, key):
    """True while a just-created resource is still unknown to parts of EC2 (eventual consistency)."""
    born = STATE["born"][kind].get(key)
    return born is not None and time.monotonic() - born < STATE["windows"][kind]


def not_yet_visible(action, params):
    """The (code, message) EC2 may answer for a call naming a resource in its window, or None.

    Creating a key pair again is left to moto (a duplicate). DeleteKeyPair of a key in its window is
    NotFound too (real EC2 may also answer success and delete nothing): the client has to retry."""
    if action in ("CreateKeyPair", "ImportKeyPair"):
        return None
    with LOCK:
        for kind, naming in NAMING.items():
            named = [v[0] for k, v in params.items() if naming.fullmatch(k) and in_window(kind, v[0])]
            if named:
                code, message = NOT_FOUND[kind]
                if len(named) > 1:  # EC2's plural: "The instance IDs 'i-1, i-2' do not exist"
                    message = message.replace("ID ", "IDs ").replace("key pair ", "key pairs ").replace("does", "do")
                return code, message.format(", ".join(named))
    return None


def note_created(self, action, params, body):
    """Starts the consistency window of what a successful call created."""
    now = time.monotonic()
    with LOCK:
        if action in ("CreateKeyPair", "ImportKeyPair"):
            name = params["KeyName"][0]
            STATE["born"]["key_pair"][name] = now
            key_pair = self.ec2_backend.key_pairs.get(name)
            if key_pair is not None:
                STATE["born"]["key_pair"][key_pair.id] = now
        elif action == "RunInstances":
            text = body.decode() if isinstance(body, bytes) else body
            for instance_id in re.findall(r"<instanceId>(i-[0-9a-f]+)</instanceId>", text):
                STATE["born"]["instance"].setdefault(instance_id, now)


def roll_chaos(action):
    """None, or (code, status, after) for a random failure; the seeded RNG makes runs repeatable."""
    with LOCK:
        chaos = STATE["chaos"]
        if chaos is None or not ({action, "*"} & set(chaos["actions"])):
            return None
        rng = chaos["rng"]
        if rng.random() >= chaos["rate"]:
            return None
        after = rng.random() < chaos["after_rate"]
        code, status = rng.choice(chaos["codes"])
        return code, int(status), after


def replay_token(action, params):
    """EC2's idempotency (moto has none): RunInstances again with a ClientToken gets the first answer."""
    token = params.get("ClientToken", [None])[0]
    if action != "RunInstances" or token is None:
        return None
    with LOCK:
        first = STATE["tokens"].get(token)
    if first is None:
        return None
    first_params, answer = first
    if first_params != params:
        message = "Arguments on this idempotent request are inconsistent with arguments used in previous request(s)."
        return error_answer("IdempotentParameterMismatch", message, 400)
    return answer


def error_answer(code, message, status):
    return status, {"status": status, "Content-Type": "text/xml"}, error_body(code, message)


def count(key):
    with LOCK:
        STATE["calls"][key] += 1


def record(action, params, region, access_key=None):
    """Keeps the call's parameters, flattened (the query protocol sends each name once), the
    region it was signed for, as `_region`, and the access key id it was signed with, `_access_key`."""
    flat = {k: v[0] if len(v) == 1 else v for k, v in params.items()}
    flat["_region"] = region
    flat["_access_key"] = access_key
    with LOCK:
        STATE["requests"].append((action, flat))


def requests_of(action):
    with LOCK:
        return [params for a, params in STATE["requests"] if action is None or a == action]


# What an encoded authorization failure message starts with: DecodeAuthorizationMessage knows its own.
ENCODED_PREFIX = "amiprobe-test:"


def is_dry_run(params):
    return params.get("DryRun", ["false"])[0].lower() == "true"


def denied_action(action, params):
    """The IAM action /deny refuses that the call needs, or None: its own, then ec2:CreateTags for a
    call that tags what it creates (EC2 authorizes tag-on-create as CreateTags on the new resource)."""
    needed = [f"ec2:{action}"]
    if any(k.startswith("TagSpecification") for k in params):
        needed.append("ec2:CreateTags")
    with LOCK:
        return next((a for a in needed if a in STATE["deny"]), None)


def unauthorized(iam_action, region, resource=None):
    """EC2's UnauthorizedOperation: the reason is only in the encoded message, as on EC2."""
    document = {
        "allowed": False,
        "explicitDeny": False,
        "matchedStatements": {"items": []},
        "failures": {"items": []},
        "context": {
            "principal": {"id": "AIDATEST", "arn": f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:user/amiprobe-test"},
            "action": iam_action,
            "resource": resource or f"arn:aws:ec2:{region}:{DEFAULT_ACCOUNT_ID}:*",
            "conditions": {"items": []},
        },
    }
    encoded = ENCODED_PREFIX + base64.b64encode(json.dumps(document).encode()).decode()
    message = f"You are not authorized to perform this operation. Encoded authorization failure message: {encoded}"
    return error_answer("UnauthorizedOperation", message, 403)


def policy_refusal(self, action, params):
    """/policy: (IAM action, resource) of the first check of the call its document refuses, or None."""
    with LOCK:
        document = STATE["policy"]
    if document is None:
        return None
    iam = iam_backends[DEFAULT_ACCOUNT_ID]["aws"]
    checks = ec2_authz.Authz(self.ec2_backend, iam, self.region, DEFAULT_ACCOUNT_ID).checks(action, params)
    refused = iam_policy.first_refused(document, checks)
    return refused and refused[:2]


original_call_action = EC2Response.call_action


def call_action(self):
    """Every EC2 call: latency, throttle, faults, consistency windows and chaos, then moto itself."""
    action = self._get_action()
    params = self.querystring
    oracle = is_oracle(self)
    dry_run = is_dry_run(params)
    counted = f"dryrun:{action}" if dry_run else action
    count(counted)
    record(counted, params, self.region, sts.access_key(self, action))
    settle_timing()
    settle_shutting_down()
    fate.settle()
    # EC2 takes the token as a request arrives (and refuses at once); the time it then takes is the
    # answer's. Throttling after the latency would move each call's token by its jitter, and refuse a
    # client that paced its calls exactly at the limit.
    if throttled(action, params):
        return error_answer("RequestLimitExceeded", "Request limit exceeded.", 503)
    refused = None if oracle else ec2_rules.refusal(action, params, self.ec2_backend)
    if refused:  # what real EC2 refuses (ec2_rules.py), DryRun or not
        count(f"refused:{action}")
        print(f"launcher: EC2 refuses {action}: {refused[0]}: {refused[1]}", file=sys.stderr, flush=True)
        return error_answer(*refused, 400)
    if not oracle:
        delay(action)
        denied = denied_action(action, params)
        if denied:
            count(f"denied:{action}")
            return unauthorized(denied, self.region)
        refused = policy_refusal(self, action, params)
        if refused:
            count(f"denied:{action}")
            return unauthorized(refused[0], self.region, refused[1])
    if dry_run:
        return error_answer("DryRunOperation", "Request would have succeeded, but DryRun flag is set.", 412)
    fault = take_fault(action, params)
    if fault:
        count(f"fault:{action}")
        return error_answer(fault["code"], fault.get("message", f"injected {fault['code']}"), fault["status"])
    chaos = None
    if not oracle:
        missing = not_yet_visible(action, params)
        if missing:
            count(f"consistency:{action}")
            return error_answer(*missing, 400)
        chaos = roll_chaos(action)
        if chaos and not chaos[2]:
            count(f"chaos:{action}")
            return error_answer(chaos[0], f"injected {chaos[0]} (chaos)", chaos[1])
    if action == "DeleteSecurityGroup":
        users = group_users(self, params)
        if users:
            count(f"dependency:{action}")
            message = f"resource {users[0]} has a dependent object ({', '.join(users[1:])})"
            return error_answer("DependencyViolation", message, 400)
    answer = replay_token(action, params) or original_call_action(self)
    status, _, body = answer
    if int(status) == 200:
        note_created(self, action, params, body)
        if action == "RunInstances" and "ClientToken" in params:
            with LOCK:
                STATE["tokens"].setdefault(params["ClientToken"][0], (dict(params), answer))
        if action == "TerminateInstances":
            hold_shutting_down(self, params)
        if chaos:
            count(f"chaos:{action}")
            return error_answer(chaos[0], f"injected {chaos[0]} after the action took effect (chaos)", chaos[1])
    return answer


def decode_answer(self):
    """STS DecodeAuthorizationMessage of a message /deny made (query protocol, as STS answers)."""
    with LOCK:
        refused = "sts:DecodeAuthorizationMessage" in STATE["deny"]
        document = STATE["policy"]
    if document is not None:
        refused = refused or iam_policy.decide(document, "sts:DecodeAuthorizationMessage", "*", {}) != "allow"
    if refused:
        body = (
            '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
            "<Code>AccessDenied</Code><Message>not authorized to perform: sts:DecodeAuthorizationMessage</Message>"
            f"</Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
        )
        return 403, {"status": 403, "Content-Type": "text/xml"}, body
    encoded = self.querystring.get("EncodedMessage", [""])[0]
    try:
        assert encoded.startswith(ENCODED_PREFIX)
        decoded = base64.b64decode(encoded[len(ENCODED_PREFIX) :], validate=True).decode()
    except (AssertionError, ValueError):
        body = (
            '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
            "<Code>InvalidAuthorizationMessageException</Code><Message>invalid message</Message>"
            f"</Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
        )
        return 400, {"status": 400, "Content-Type": "text/xml"}, body
    escaped = decoded.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    body = (
        '<DecodeAuthorizationMessageResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
        f"<DecodeAuthorizationMessageResult><DecodedMessage>{escaped}</DecodedMessage>"
        f"</DecodeAuthorizationMessageResult><ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId>"
        "</ResponseMetadata></DecodeAuthorizationMessageResponse>"
    )
    return 200, {"status": 200, "Content-Type": "text/xml"}, body


original_sts_call_action = TokenResponse.call_action


def sts_call_action(self):
    """STS as moto has it, plus DecodeAuthorizationMessage (moto has none)."""
    action = self._get_action()
    count(f"sts:{action}")
    sts.access_key(self, f"sts:{action}")  # GET /sts lists it, with its key
    if action == "AssumeRole":
        return sts.assume_role(self, original_sts_call_action)
    if action == "DecodeAuthorizationMessage":
        return decode_answer(self)
    return original_sts_call_action(self)


TokenResponse.call_action = sts_call_action
ssm_authz.install(STATE, LOCK, iam_policy, DEFAULT_ACCOUNT_ID)  # SSM PutParameter under /deny and /policy
original_ssm_call_action = SimpleSystemManagerResponse.call_action


def ssm_call_action(self):
    """Every SSM call (JSON protocol): counted and recorded as "ssm:Action", failed by a /fault naming
    that action exactly, then moto's dispatch (ssm_authz.py and ssm_run.py answer some actions)."""
    action = f"ssm:{self._get_action()}"
    count(action)
    try:
        body = json.loads(self.body or "{}")
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    access_key = sts.access_key(self, action)
    with LOCK:  # the body as sent (JSON keeps its structure: nothing to flatten)
        STATE["requests"].append((action, {**body, "Action": action, "_region": self.region, "_access_key": access_key}))
    # The instances' clocks, as on an EC2 call: an agent sees the state the instance is in now.
    settle_timing()
    settle_shutting_down()
    fate.settle()
    # `when` compares the body's top-level members, as they are in the JSON.
    fault = take_fault(action, {k: [v] for k, v in body.items()}, wildcard=False)
    if fault:
        count(f"fault:{action}")
        status = int(fault["status"])
        payload = json.dumps({"__type": fault["code"], "message": fault.get("message", f"injected {fault['code']}")})
        return status, {"status": status, "Content-Type": "application/x-amz-json-1.1"}, payload
    return original_ssm_call_action(self)


SimpleSystemManagerResponse.call_action = ssm_call_action


def group_users(self, params):
    """EC2 keeps a security group while an instance in it is not `terminated` (moto deletes it at once):
    the group's id, then those instances, or [] when nothing uses it."""
    group_id = params.get("GroupId", [None])[0]
    if group_id is None and params.get("GroupName"):
        group = self.ec2_backend.get_security_group_by_name_or_id(params["GroupName"][0])
        group_id = group.id if group else None
    if group_id is None:
        return []
    with LOCK:
        users = [
            instance.id
            for instance in self.ec2_backend.all_instances()
            if instance._state.name != "terminated"
            and any(
                g.id == group_id
                for g in [*instance.security_groups, *(g for nic in instance.nics.values() for g in nic.group_set)]
            )
        ]
    return [group_id, *users] if users else []


def hold_shutting_down(self, params):
    """moto terminates at once; EC2 shows `shutting-down` for a while first: a timed instance for its
    own drawn time (its service stops listening now), others for /shutting_down's seconds."""
    with LOCK:
        now = time.monotonic()
        for key, value in params.items():
            if not NAMING["instance"].fullmatch(key):
                continue
            instance = self.ec2_backend.get_instance(value[0])
            record = STATE["timeline"].get(instance.id)
            seconds = STATE["shutting_down_s"]
            if record is not None:
                if record["shutting_down_s"] is not None:
                    seconds = record["shutting_down_s"]
                if record["terminate_requested_at"] is None:
                    record["terminate_requested_at"] = now
                    record["terminated_at"] = now + max(0.0, seconds)
                    STATE["booting"].discard(instance.id)
                    SERVICES.stop(instance.id)
                    if record["drop_until_service"]:
                        # Nothing will listen there again: connections are refused from now on, as
                        # without the option, rather than hanging on an instance that is going away.
                        SERVICES.undrop(now, record["address"])
            if seconds <= 0:
                continue
            _, until = STATE["shutting"].setdefault(instance.id, (instance, now + seconds))
            if instance._state.name == "terminated" and now < until:
                instance._state.name, instance._state.code = "shutting-down", 32


def settle_shutting_down():
    """Instances whose `shutting-down` time is over become `terminated`."""
    with LOCK:
        now = time.monotonic()
        for instance, until in STATE["shutting"].values():
            if now >= until and instance._state.name == "shutting-down":
                instance._state.name, instance._state.code = "terminated", 48


def hold_pending(self):
    """Instances not seen before start their pending time; pending ones count a describe down."""
    with LOCK:
        for instance in self.ec2_backend.all_instances():
            if instance.id not in STATE["seen"]:
                STATE["seen"].add(instance.id)
                if STATE["pending_describes"] > 0 and instance._state.name == "running":
                    STATE["pending"][instance.id] = STATE["pending_describes"]
            left = STATE["pending"].get(instance.id, 0)
            if left > 0 and instance._state.name in ("running", "pending"):
                instance._state.name, instance._state.code = "pending", 0
                STATE["pending"][instance.id] = left - 1
            elif instance.id in STATE["pending"] and instance._state.name == "pending":
                instance._state.name, instance._state.code = "running", 16
                del STATE["pending"][instance.id]
                password = STATE["passwords"].get(instance.id)
                if password is not None and password["running_at"] is None:
                    password["running_at"] = time.monotonic()  # its password clock starts now


# --- /timing: EC2's own pace, per instance -------------------------------------------------------


def timing_range(value):
    """A /timing duration: [low, high] drawn uniformly, or one number, fixed."""
    if isinstance(value, (list, tuple)):
        low, high = float(value[0]), float(value[1])
        if high < low:
            raise ValueError(f"range {value}: the high end is below the low end")
        return low, high
    return float(value), float(value)


def timing_config(data):
    """The /timing body with its defaults and its own seeded RNGs; None for {} (timing off). Reboot
    times come from an RNG of their own, so that adding them left every other draw of a seed as it was."""
    if not data:
        return None
    port = int(data.get("port", 80))
    rdp_port = None if data.get("rdp_port") is None else int(data["rdp_port"])
    if rdp_port == port:
        raise ValueError(f"rdp_port {rdp_port} is the HTTP port too")
    drop = bool(data.get("drop_until_service", False))
    if drop:
        DROPS.setup()  # ValueError (the answer's 400) where it must not, or cannot, drop
    return {
        "boot_s": timing_range(data.get("boot_s", 0.0)),
        "service_s": timing_range(data.get("service_s", 0.0)),
        # Left out: terminated instances follow /shutting_down, as without /timing.
        "shutting_down_s": timing_range(data["shutting_down_s"]) if "shutting_down_s" in data else None,
        "reboot_s": timing_range(data.get("reboot_s", 5.0)),
        "port": port,
        "rdp_port": rdp_port,
        "rdp_mute": bool(data.get("rdp_mute", False)),
        "drop_until_service": drop,
        "rng": random.Random(data.get("seed", 0)),
        "reboot_rng": random.Random(data.get("seed", 0)),
    }


def draw(bounds, rng):
    low, high = bounds
    return low if high <= low else rng.uniform(low, high)


# Every timed instance gets an address of its own, never one used before (not even across resets: a
# late probe of an old run must not reach a new instance). 127.0.0.0/8 is all loopback on Linux.
ADDRESSES = itertools.count()


def next_address():
    """127.1.0.1, 127.1.0.2, ... skipping .0 and .255 in the last octet: never 127.0.0.1, where moto
    and the control API listen."""
    n = next(ADDRESSES)
    return f"127.{1 + n // (254 * 256)}.{n // 254 % 256}.{n % 254 + 1}"


def launch_timed(instance, timing):
    """Starts a just-launched instance's clock (LOCK held): `pending` for its boot time, then
    `running`, its service answering on its own address once its service time has passed too (see
    start_services). Returns its record."""
    now = time.monotonic()
    rng = timing["rng"]
    boot, service = draw(timing["boot_s"], rng), draw(timing["service_s"], rng)
    down = draw(timing["shutting_down_s"], rng) if timing["shutting_down_s"] else None
    record = {
        "instance": instance,
        "launched": now,
        "running_at": now + boot,
        "service_at": now + boot + service,
        "boot_s": boot,
        "service_s": service,
        "shutting_down_s": down,
        "terminate_requested_at": None,
        "terminated_at": None,
        "address": next_address(),
        "port": timing["port"],
        "rdp_port": timing["rdp_port"],
        "reboot_s": draw(timing["reboot_s"], timing["reboot_rng"]),
        "reboots": [],  # monotonic times of the RebootInstances calls that took effect
        "drop_until_service": timing["drop_until_service"],
        # What listens on its address once its service time is over: (port, kind).
        "listeners": [(timing["port"], "http")]
        + ([(timing["rdp_port"], "rdp_mute" if timing["rdp_mute"] else "rdp")] if timing["rdp_port"] else []),
    }
    STATE["timeline"][instance.id] = record
    STATE["booting"].add(instance.id)
    instance._state.name, instance._state.code = "pending", 0
    return record


def start_services(records):
    """Schedules the services of just-launched timed instances (LOCK held), their addresses dropped
    first where asked: all of one RunInstances call in one nft call, and before their service time can
    come (else the Services thread could let an address go before it was dropped, and it would stay
    dropped)."""
    DROPS.add([r["address"] for r in records if r["drop_until_service"]])
    for r in records:
        SERVICES.schedule(r["service_at"], r["instance"].id, r["address"], r["listeners"])
        if r["drop_until_service"]:
            SERVICES.undrop(r["service_at"], r["address"])


def settle_timing():
    """Timed instances whose boot time is over become `running` (lazily, on the next call: the state
    each call sees is the one of its moment)."""
    with LOCK:
        now = time.monotonic()
        for instance_id in list(STATE["booting"]):
            record = STATE["timeline"][instance_id]
            instance = record["instance"]
            if record["terminate_requested_at"] is not None:
                STATE["booting"].discard(instance_id)
            elif now >= record["running_at"]:
                if instance._state.name == "pending":
                    instance._state.name, instance._state.code = "running", 16
                STATE["booting"].discard(instance_id)


def timeline():
    """GET /timeline: per timed instance, what happened when, in seconds since the last reset (None for
    what has not happened, or never will); the drawn durations; its address and service port."""

    def since(t):
        return None if t is None else round(t - epoch, 3)

    with LOCK:
        epoch, now = STATE["epoch"], time.monotonic()
        out = {}
        for instance_id, r in STATE["timeline"].items():
            stopped = r["terminate_requested_at"]

            def reached(t):
                return t if t <= now and (stopped is None or t <= stopped) else None

            terminated = r["terminated_at"]
            out[instance_id] = {
                "launched": since(r["launched"]),
                "running_at": since(reached(r["running_at"])),
                "service_at": since(reached(r["service_at"])),
                "first_answered_at": since(SERVICES.first_answered.get(instance_id)),
                "terminate_requested_at": since(stopped),
                "terminated_at": since(terminated if terminated is not None and terminated <= now else None),
                "boot_s": round(r["boot_s"], 3),
                "service_s": round(r["service_s"], 3),
                "shutting_down_s": None if r["shutting_down_s"] is None else round(r["shutting_down_s"], 3),
                "reboot_s": round(r["reboot_s"], 3),
                "address": r["address"],
                "port": r["port"],
                "rdp_port": r["rdp_port"],
                "drop_until_service": r["drop_until_service"],
                "reboots": [since(t) for t in r["reboots"]],
            }
        return out


def address_property(original):
    """An Instance address property: the timed instance's own loopback address, else moto's."""

    def get(self):
        record = STATE["timeline"].get(self.id)  # no LOCK: called while moto renders, maybe under it
        return record["address"] if record is not None else original.fget(self)

    return property(get)


for _name in ("public_ip", "public_ip_address", "private_ip", "private_ip_address"):
    setattr(Instance, _name, address_property(getattr(Instance, _name)))

original_backend_run_instances = InstanceBackend.run_instances


def backend_run_instances(self, *args, **kwargs):
    """moto's launch, then each new instance's clock under /timing (before the answer is written, so
    RunInstances already reports the pending state and the addresses, and a client cannot reach an
    address before it is dropped), and a Windows instance's Administrator password."""
    reservation = original_backend_run_instances(self, *args, **kwargs)
    with LOCK:
        timed = []
        for instance in reservation.instances:
            if STATE["timing"] is not None:
                timed.append(launch_timed(instance, STATE["timing"]))
            set_password(self, instance)
        start_services(timed)
    return reservation


InstanceBackend.run_instances = backend_run_instances


def backend_reboot_instances(self, instance_ids):
    """EC2 reboots running instances and ignores the others (moto marks every one `running`). A timed
    instance's services go away for its reboot time; every reboot is counted for /console's
    `after_reboot` from the moment it is over."""
    instances = self.get_multi_instances_by_id(instance_ids)  # unknown ids: InvalidInstanceID.NotFound
    rebooted = []
    with LOCK:
        now = time.monotonic()
        for instance in instances:
            if instance._state.name != "running":
                continue
            instance.reboot()
            rebooted.append(instance)
            over = now
            record = STATE["timeline"].get(instance.id)
            if record is not None:
                record["reboots"].append(now)
                over = now + record["reboot_s"]
                SERVICES.restart(instance.id, max(over, record["service_at"]), record["address"], record["listeners"])
            STATE["reboots"].setdefault(instance.id, []).append(over)
    return rebooted


InstanceBackend.reboot_instances = backend_reboot_instances
# After the launcher's launch and reboot: the agents see the /timing clock and the real reboots.
ssm_run.install(lambda instance_id: (STATE["timeline"].get(instance_id) or {}).get("running_at"))


# --- Windows: the Administrator password (/windows, GetPasswordData) -------------------------------

PASSWORD_ALPHABET = string.ascii_letters + string.digits + "!@#$%&*()-_=+;:,.?"
OTHER_KEY = []  # the RSA key /windows' wrong_key encrypts to, made once when first asked for
CRLF_MARKER = "__AMIPROBE_CRLF__"  # stands for CR LF in PasswordData while moto serializes it


def other_key():
    if not OTHER_KEY:
        OTHER_KEY.append(rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key())
    return OTHER_KEY[0]


def set_password(backend, instance):
    """A just-launched Windows instance's password, encrypted as EC2Launch does (LOCK held): RSA PKCS#1
    v1.5 to the key pair's public key as it is now (a key pair deleted later changes nothing). No key
    pair, or an ed25519 one: no password at all."""
    if getattr(instance, "platform", None) != "windows" or not instance.key_name:
        return
    key_pair = backend.key_pairs.get(instance.key_name)
    if key_pair is None:
        return
    try:
        public = public_key_parse(key_pair.material_public)
    except ValueError:
        return
    if not isinstance(public, rsa.RSAPublicKey):
        return
    cfg = STATE["password_cfg"]
    password = cfg["password"] or "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(32))
    target = other_key() if cfg["wrong_key"] else public
    encrypted = target.encrypt(password.encode(), padding.PKCS1v15())
    timed = instance.id in STATE["timeline"]
    STATE["passwords"][instance.id] = {
        "password": password,
        "data": base64.b64encode(encrypted).decode(),
        "password_s": cfg["password_s"],
        # Timed instances run from their boot time (read from the timeline); instances held by
        # /pending from their first `running` describe (hold_pending); the others at once.
        "running_at": None if timed or STATE["pending_describes"] > 0 else time.monotonic(),
    }


def password_data(instance_id):
    """(PasswordData, the time it was ready or None) as GetPasswordData answers now (LOCK held)."""
    entry = STATE["passwords"].get(instance_id)
    if entry is None:
        return "", None
    running_at = entry["running_at"]
    record = STATE["timeline"].get(instance_id)
    if record is not None:
        stopped = record["terminate_requested_at"]
        running_at = record["running_at"] if stopped is None or stopped >= record["running_at"] else None
    if running_at is None:
        return "", None
    ready_at = running_at + entry["password_s"]
    now = time.monotonic()
    if now < ready_at:
        return "", None
    # As EC2 answers it: the base64 between CR LF pairs (EC2Launch's console block, <Password>...</Password>).
    return "\r\n" + entry["data"] + "\r\n", time.time() - (now - ready_at)


def get_password_data(self):
    instance_id = self._get_param("InstanceId")
    instance = self.ec2_backend.get_instance(instance_id)  # unknown: InvalidInstanceID.NotFound
    with LOCK:
        data, ready = password_data(instance.id)
    stamp = datetime.fromtimestamp(ready if ready is not None else time.time(), timezone.utc)
    # moto writes a CR as is, which an XML parser reads as a line feed; EC2 escapes it, so that clients
    # get the CR LF pairs back: the pairs go through the serializer as a marker.
    marked = data.replace("\r\n", CRLF_MARKER)
    status, headers, body = self.serialized(
        ActionResult({"InstanceId": instance.id, "Timestamp": stamp, "PasswordData": marked})
    )
    if isinstance(body, bytes):
        body = body.decode()
    return status, headers, body.replace(CRLF_MARKER, "&#xD;&#xA;")


RDP_MAX_REQUEST = 4096  # a real Connection Request is well under 512 bytes
RDP_CONFIRM_PLAIN = bytes.fromhex("0300000b" "06d00000123400")  # X.224 CC, no negotiation data


def rdp_reply(data):
    """What an RDP host answers to the bytes received so far: ("more", None) while the Connection
    Request is incomplete, ("reply", X.224 Connection Confirm) for a whole valid one, ("close", None)
    for anything else. See the docstring at the top for the bytes."""
    if data[:1] not in (b"", b"\x03") or data[1:2] not in (b"", b"\x00"):
        return "close", None  # not a TPKT header
    if len(data) < 4:
        return "more", None
    length = int.from_bytes(data[2:4], "big")
    if length < 11 or length > RDP_MAX_REQUEST:
        return "close", None
    if len(data) < length:
        return "more", None
    pdu = data[:length]
    if pdu[4] != length - 5 or pdu[5] & 0xF0 != 0xE0:
        return "close", None  # the X.224 length indicator disagrees, or not a Connection Request
    rest = pdu[11:]
    if rest.startswith(b"Cookie: ") and b"\r\n" in rest:  # a cookie or routing token comes first
        rest = rest[rest.index(b"\r\n") + 2 :]
    if len(rest) >= 8 and rest[0] == 0x01 and rest[2:4] == b"\x08\x00":  # RDP_NEG_REQ
        requested = int.from_bytes(rest[4:8], "little")
        selected = 0x00000001 if requested & 0x00000001 else 0x00000000  # PROTOCOL_SSL, else PROTOCOL_RDP
        negotiation = bytes([0x02, 0x00, 0x08, 0x00]) + selected.to_bytes(4, "little")  # RDP_NEG_RSP
        return "reply", bytes.fromhex("03000013" "0ed00000123400") + negotiation
    return "reply", RDP_CONFIRM_PLAIN


class Services:
    """The timed instances' services on each instance's address: `200 ok` to any HTTP request on its
    port and, with an rdp_port, an RDP host's Connection Confirm there (or silence, muted), from its
    service time until its termination, and away during a reboot. One thread and one selector for all
    of them (1,000 instances are 1,000 listening sockets, not 1,000 threads); before its time nothing
    listens there, so a connection is refused, or, under `drop_until_service`, goes unanswered until
    this thread lets the address go (`undrop`) once its listeners are up. Other threads only queue
    work and wake the loop: the selector is touched by its own thread alone."""

    ANSWER = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"

    def __init__(self):
        self.lock = threading.Lock()
        self.due = []  # heap of (time, seq, instance id, generation, address, [(port, kind)])
        self.seq = itertools.count()
        self.generation = {}  # instance id -> generation of its due start; None once terminated
        self.stopping = []  # instance ids whose listeners (and connections) close now
        self.stop_all = False
        self.undrops = []  # heap of (time, seq, address): when DROPS lets each address go
        # instance id -> monotonic time its HTTP service first sent its answer. Written by the loop
        # alone; read by /timeline (one dict lookup: no lock needed).
        self.first_answered = {}
        self.thread = None

    def schedule(self, at, instance_id, address, listeners):
        with self.lock:
            generation = self.generation.setdefault(instance_id, 0)
            heapq.heappush(self.due, (at, next(self.seq), instance_id, generation, address, listeners))
            self.start_thread()
        self.wake()

    def undrop(self, at, address):
        """Lets DROPS go of `address` at `at`, after any listener due by then is up: a SYN let through
        before the listener exists would be refused, which a booting EC2 instance never does.
        Independent of the instance's services: a reboot before its service time moves their start,
        not the end of the drop."""
        with self.lock:
            heapq.heappush(self.undrops, (at, next(self.seq), address))
            self.start_thread()
        self.wake()

    def start_thread(self):
        """The loop's thread, started on first use (self.lock held)."""
        if self.thread is None:
            self.selector = selectors.DefaultSelector()
            self.wake_r, self.wake_w = socket.socketpair()
            self.wake_r.setblocking(False)
            self.selector.register(self.wake_r, selectors.EVENT_READ, ("wake", None))
            self.thread = threading.Thread(target=self.loop, name="instance-services", daemon=True)
            self.thread.start()

    def restart(self, instance_id, at, address, listeners):
        """A reboot: everything of the instance closes now and listens again at `at` (a start still due
        from before is dropped)."""
        with self.lock:
            generation = self.generation.get(instance_id, 0)
            if generation is None:
                return
            self.generation[instance_id] = generation + 1
            self.stopping.append(instance_id)
            heapq.heappush(self.due, (at, next(self.seq), instance_id, generation + 1, address, listeners))
        self.wake()

    def stop(self, instance_id):
        with self.lock:
            self.generation[instance_id] = None  # never again, even if still due
            self.stopping.append(instance_id)
        self.wake()

    def close_all(self):
        with self.lock:
            self.due.clear()
            self.undrops.clear()  # the caller flushes DROPS itself
            self.generation.clear()
            self.first_answered.clear()
            self.stop_all = True
        self.wake()

    def wake(self):
        if self.thread is not None:
            try:
                self.wake_w.send(b"x")
            except BlockingIOError:
                pass  # a wake-up is already waiting

    def loop(self):
        listening = {}  # instance id -> its listening sockets
        while True:
            with self.lock:
                stopping, self.stopping = self.stopping, []
                stop_all, self.stop_all = self.stop_all, False
                now = time.monotonic()
                starting = []
                while self.due and self.due[0][0] <= now:
                    _, _, instance_id, generation, address, listeners = heapq.heappop(self.due)
                    if self.generation.get(instance_id) == generation:
                        starting.append((instance_id, address, listeners))
                opening = []
                while self.undrops and self.undrops[0][0] <= now:
                    opening.append(heapq.heappop(self.undrops)[2])
                nexts = [heap[0][0] for heap in (self.due, self.undrops) if heap]
                timeout = max(0.0, min(nexts) - now) if nexts else None
            if stop_all:
                stopping = list(listening)
                for key in list(self.selector.get_map().values()):
                    if key.data[0] == "conn":
                        self.close(key.fileobj)
            if stopping:
                gone = set(stopping)
                for instance_id in gone:
                    for sock in listening.pop(instance_id, []):
                        self.close(sock)
                for key in list(self.selector.get_map().values()):
                    if key.data[0] == "conn" and key.data[1][1] in gone:
                        self.close(key.fileobj)  # a reboot resets open connections too
            for instance_id, address, listeners in starting:
                for port, kind in listeners:
                    try:
                        sock = socket.create_server((address, port), backlog=128)
                    except OSError as e:
                        where = f"{instance_id}'s {kind} service on {address}:{port}"
                        print(f"moto_launcher: {where}: {e}", file=sys.stderr)
                        continue
                    sock.setblocking(False)
                    self.selector.register(sock, selectors.EVENT_READ, ("listen", (kind, instance_id)))
                    listening.setdefault(instance_id, []).append(sock)
            if opening:
                DROPS.remove(opening)  # all that are due at once in one nft call; listeners already up
            for key, _ in self.selector.select(timeout):
                what, data = key.data
                if what == "wake":
                    try:
                        while key.fileobj.recv(4096):
                            pass
                    except BlockingIOError:
                        pass
                elif what == "listen":
                    self.accept(key.fileobj, *data)
                else:
                    self.serve(key.fileobj, *data)

    def accept(self, sock, kind, instance_id):
        while True:
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, OSError):
                return
            conn.setblocking(False)
            self.selector.register(conn, selectors.EVENT_READ, ("conn", (kind, instance_id, bytearray())))

    def serve(self, conn, kind, instance_id, received):
        """HTTP: reads until the request's headers end, then answers. RDP: reads until the Connection
        Request is whole, then confirms (or closes on anything else). Muted: reads and discards. A
        TCP probe's bare connect-and-close just closes, whatever the kind."""
        try:
            chunk = conn.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.close(conn)
            return
        if kind == "rdp_mute":
            return  # accepts, reads, never answers
        received += chunk
        if kind == "rdp":
            verdict, answer = rdp_reply(bytes(received))
            if verdict == "more":
                return
        else:
            if b"\r\n\r\n" not in received:
                return
            answer = self.ANSWER
        if answer:
            try:
                conn.send(answer)  # small enough for any socket buffer: one send
            except OSError:
                pass
            else:
                if kind == "http":
                    self.first_answered.setdefault(instance_id, time.monotonic())
        self.close(conn)

    def close(self, sock):
        try:
            self.selector.unregister(sock)
        except (KeyError, ValueError):
            pass
        sock.close()


SERVICES = Services()


# --- /timing "drop_until_service": booting instances drop every packet (nftables) ---------------------

NFT_TABLE = "inet amiprobe_launcher"
# Dropped on the input hook: on loopback a packet passes output, then input, and a drop on output can
# surface as EPERM to the sender, not as the silence of a machine that is not up. The empty table
# first, then its deletion, makes the script work whether or not the table already exists (nft 1.0.6
# has no `destroy`), and leaves exactly one rule.
NFT_SETUP = f"""table {NFT_TABLE} {{}}
delete table {NFT_TABLE}
table {NFT_TABLE} {{
    set dropped {{ type ipv4_addr; }}
    chain input {{ type filter hook input priority filter; policy accept; ip daddr @dropped drop; }}
}}
"""


def drop_refusal(interfaces=None, namespaces=None):
    """Why `drop_until_service` must not be done here, or None. It changes the firewall of the network
    namespace the launcher runs in, so that must be a loopback-only one of its own (the tests'), never
    a host's: only `lo` there, and not init's namespace where that can be read. The interfaces are
    asked of the kernel (if_nameindex: this process's namespace); /sys/class/net would show those of
    the namespace sysfs was mounted in, the host's. `interfaces` ([names]) and `namespaces` ((ours,
    init's)) stand in for the real ones in the self-test."""
    if interfaces is None:
        interfaces = [name for _, name in socket.if_nameindex()]
    if sorted(interfaces) != ["lo"]:
        return (
            "drop_until_service changes the firewall of the launcher's network namespace, so it runs only "
            f"in a loopback-only one (only lo); this one has {', '.join(sorted(interfaces))}"
        )
    if namespaces is None:
        try:
            namespaces = (os.readlink("/proc/self/ns/net"), os.readlink("/proc/1/ns/net"))
        except OSError:
            namespaces = None  # init's is not ours to read here: the interfaces have to do
    if namespaces is not None and namespaces[0] == namespaces[1]:
        return "drop_until_service: the launcher runs in init's network namespace, the host's own firewall"
    return None


class Drops:
    """The set of dropped addresses, in the table NFT_SETUP makes in the launcher's own namespace. Kept
    here too, so that a removal names only members (nft refuses a whole batch for one that is not) and
    an address no longer dropped costs no nft call. One lock serializes the nft calls with that copy."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ready = False
        self.members = set()

    def setup(self):
        """The table, made once (the namespace is checked every time); ValueError saying why not."""
        reason = drop_refusal()
        if reason:
            raise ValueError(reason)
        with self.lock:
            if self.ready:
                return
            try:
                self.nft(NFT_SETUP)
            except OSError as e:
                raise ValueError(f"drop_until_service needs nftables (`nft`, as root): {e}") from e
            self.ready = True

    def add(self, addresses):
        with self.lock:
            new = [a for a in addresses if a not in self.members]
            if new and self.change("add", new):
                self.members.update(new)

    def remove(self, addresses):
        with self.lock:
            gone = [a for a in dict.fromkeys(addresses) if a in self.members]
            if gone and self.change("delete", gone):
                self.members.difference_update(gone)

    def flush(self):
        with self.lock:
            if self.ready and self.nft_logged(f"flush set {NFT_TABLE} dropped\n"):
                self.members.clear()

    def change(self, verb, addresses):
        return self.nft_logged(f"{verb} element {NFT_TABLE} dropped {{ {', '.join(addresses)} }}\n")

    def nft_logged(self, script):
        """nft, a failure reported on stderr (as a service that cannot listen is): the run goes on, its
        timing no longer the one asked for, and says so. True when it worked."""
        try:
            self.nft(script)
            return True
        except OSError as e:
            print(f"moto_launcher: drop_until_service: {e}", file=sys.stderr)
            return False

    @staticmethod
    def nft(script):
        try:
            done = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True, timeout=30)
        except subprocess.TimeoutExpired as e:
            raise OSError(f"nft did not answer in {e.timeout} s") from e
        if done.returncode != 0:
            raise OSError(f"nft -f failed ({done.returncode}): {done.stderr.strip()}")


DROPS = Drops()


def hidden(self, kind, key):
    """A listing without names leaves out what is in its consistency window (not for the oracle)."""
    if is_oracle(self):
        return False
    with LOCK:
        return in_window(kind, key)


original_describe_images = EC2Response.describe_images
original_describe_instances = EC2Response.describe_instances
original_describe_instance_status = EC2Response.describe_instance_status
original_describe_key_pairs = EC2Response.describe_key_pairs


def describe_images(self):
    """EC2 fails the whole call for one unknown id of ImageIds (moto: only when it knows none)."""
    backend = self.ec2_backend
    ids = self._get_param("ImageIds", [])
    missing = [i for i in ids if i.startswith("ami-") and i not in backend.amis and i not in backend.deleted_amis]
    if missing:
        raise InvalidAMIIdError(missing)
    return original_describe_images(self)


def describe_instances(self):
    hold_pending(self)
    result = original_describe_instances(self)
    if not self._get_param("InstanceIds", []):
        reservations = []
        for reservation in result.result["Reservations"]:
            reservation = copy.copy(reservation)
            reservation.instances = [i for i in reservation.instances if not hidden(self, "instance", i.id)]
            if reservation.instances:
                reservations.append(reservation)
        result.result["Reservations"] = reservations
    return result


def describe_instance_status(self):
    result = original_describe_instance_status(self)
    statuses = result.result["InstanceStatuses"]
    result.result["InstanceStatuses"] = [i for i in statuses if not hidden(self, "instance", i.id)]
    return result


def describe_key_pairs(self):
    result = original_describe_key_pairs(self)
    key_pairs = result.result["KeyPairs"]
    result.result["KeyPairs"] = [k for k in key_pairs if not hidden(self, "key_pair", k.key_name)]
    return result


def frame_jpeg(instance_id, frame):
    img = Image.new("RGB", (640, 400), (0, 0, 0))
    draw = ImageDraw.Draw(img)
    lines = [f"instance {instance_id}", "amiprobe test console", f"frame {frame // 3}"]
    for i, text in enumerate(lines):
        draw.text((20, 20 + 24 * i), text, fill=(200, 200, 200))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    return base64.b64encode(buf.getvalue()).decode()


def get_console_screenshot(self):
    instance_id = self._get_param("InstanceId")
    instance = self.ec2_backend.get_instance(instance_id)
    with LOCK:
        STATE["frames"][instance.id] += 1
        frame = STATE["frames"][instance.id]
    return ActionResult({"InstanceId": instance.id, "ImageData": frame_jpeg(instance.id, frame)})


def get_console_output(self):
    instance_id = self._get_param("InstanceId")
    instance = self.ec2_backend.get_instance(instance_id)
    with LOCK:
        text = STATE["console"].get(instance.id, STATE["console_default"])
        after = STATE["console_after"].get(instance.id, STATE["console_after_default"])
        if after:
            now = time.monotonic()
            text += after * sum(1 for over in STATE["reboots"].get(instance.id, []) if over <= now)
    return ActionResult(
        {
            "InstanceId": instance.id,
            "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "Output": base64.b64encode(text.encode()).decode(),
        }
    )


def forced_check(kind, original):
    """A status check property of moto's Instance, answering what /status set for running instances."""

    def check(self):
        with LOCK:
            forced = STATE["status"].get(self.id, {}).get(kind) or STATE["status"].get("*", {}).get(kind)
        if forced is None or self.state_code != 16:
            return original.fget(self)
        detail = "failed" if forced == "impaired" else "initializing" if forced == "initializing" else "passed"
        answer = {"Details": [{"Name": "reachability", "Status": detail}], "Status": forced}
        if forced == "impaired":
            answer["Details"][0]["ImpairedSince"] = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        return answer

    return property(check)


Instance.instance_status = forced_check("instance", Instance.instance_status)
Instance.system_status = forced_check("system", Instance.system_status)


original_ami_init = Ami.__init__
original_load_amis = AmiBackend._load_amis


def ami_init(self, *args, **kwargs):
    """No boot mode unless one is given, as on EC2 (moto's constructor makes every AMI UEFI)."""
    original_ami_init(self, *args, **kwargs)
    if "boot_mode" not in kwargs:
        self.boot_mode = None


def load_amis(self):
    """moto's built-in AMIs copy current public ones, which enable ENA."""
    original_load_amis(self)
    for ami in self.amis.values():
        ami.ena_support = True


Ami.ena_support = None  # what RegisterImage records without EnaSupport
Ami.__init__ = ami_init
AmiBackend._load_amis = load_amis


def register_image(data):
    """An AMI with the attributes of a /image body, in the region's backend; returns its id."""
    backend = ec2_backends[DEFAULT_ACCOUNT_ID][data.get("region", "eu-west-1")]
    ami = backend.register_image(name=data.get("name", "amiprobe-test"), description="registered by /image")
    ami.architecture = data.get("architecture", "x86_64")
    ami.boot_mode = data.get("boot_mode")
    ami.ena_support = data.get("ena_support")
    ami.root_device_name = data.get("root_device_name", "/dev/xvda")
    ami.root_device_type = "ebs"
    ami.virtualization_type = "hvm"
    ami.platform = data.get("platform")
    ami.state = data.get("state", "available")
    fate.dress_image(ami, data)
    return ami.id


fate.install()


LAUNCHING = threading.local()
original_add_block_device = Instance.add_block_device


def block_device_options(params):
    """The Iops and Throughput of each BlockDeviceMapping of a RunInstances call, by device name."""
    out = {}
    for key, values in params.items():
        match = re.fullmatch(r"BlockDeviceMapping\.(\d+)\.DeviceName", key)
        if not match:
            continue
        options = {}
        for name in ("Iops", "Throughput"):
            value = params.get(f"BlockDeviceMapping.{match.group(1)}.Ebs.{name}")
            if value:
                options[name.lower()] = int(value[0])
        out[values[0]] = options
    return out


def add_block_device(self, size, device_path, snapshot_id, encrypted, delete_on_termination, kms_key_id, volume_type):
    """A launch's volume with the Iops and Throughput its mapping asked for, as on EC2 (moto drops
    both, and then refuses every io1 and io2 volume for lacking IOPS)."""
    options = getattr(LAUNCHING, "volumes", {}).get(device_path)
    if not options:
        return original_add_block_device(
            self, size, device_path, snapshot_id, encrypted, delete_on_termination, kms_key_id, volume_type
        )
    volume = self.ec2_backend.create_volume(
        size=size,
        zone_name=self._placement.zone,
        snapshot_id=snapshot_id,
        encrypted=encrypted,
        kms_key_id=kms_key_id,
        volume_type=volume_type,
        **options,
    )
    self.ec2_backend.attach_volume(volume.id, self.id, device_path, delete_on_termination)


def run_instances(self):
    """moto's RunInstances, its block devices' Iops and Throughput at hand (moto runs it on this thread)."""
    LAUNCHING.volumes = block_device_options(self.querystring)
    try:
        return original_run_instances(self)
    finally:
        LAUNCHING.volumes = {}


original_run_instances = EC2Response.run_instances
Instance.add_block_device = add_block_device
EC2Response.run_instances = run_instances
EC2Response.call_action = call_action
EC2Response.describe_images = describe_images
EC2Response.describe_instances = describe_instances
EC2Response.describe_instance_status = describe_instance_status
EC2Response.describe_key_pairs = describe_key_pairs
EC2Response.get_console_screenshot = get_console_screenshot
EC2Response.get_console_output = get_console_output
EC2Response.get_password_data = get_password_data


def chaos_config(data):
    """The /chaos body with its defaults, and its own seeded RNG; None when the rate is 0."""
    if float(data.get("rate", 0.0)) <= 0:
        return None
    return {
        "rate": float(data["rate"]),
        "after_rate": float(data.get("after_rate", 0.0)),
        "actions": list(data.get("actions", ["*"])),
        "codes": [tuple(c) for c in data.get("codes", [["InternalError", 500], ["Unavailable", 503]])],
        "rng": random.Random(data.get("seed", 0)),
    }


def control_handler(moto_port):
    class Control(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def reply(self, code, payload):
            body = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            url = urlsplit(self.path)
            if self.path == "/calls":
                with LOCK:
                    self.reply(200, dict(STATE["calls"]))
            elif url.path == "/requests":
                action = parse_qs(url.query).get("action", [None])[0]
                self.reply(200, requests_of(action))
            elif self.path == "/timeline":
                self.reply(200, timeline())
            elif self.path == "/windows":
                with LOCK:
                    self.reply(200, {i: entry["password"] for i, entry in STATE["passwords"].items()})
            elif self.path == "/ready":
                self.reply(200, {"ready": True})
            elif self.path == "/sts":
                self.reply(200, sts.status())
            elif self.path == "/agent":
                self.reply(200, ssm_run.status())
            else:
                self.reply(404, {"error": "unknown path"})

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            data = json.loads(self.rfile.read(length) or b"{}")
            if self.path == "/image":
                self.reply(200, {"image_id": register_image(data)})
                return
            if self.path == "/fate":
                try:
                    fate.set_fate(data)
                except (TypeError, ValueError) as e:
                    self.reply(400, {"error": f"/fate: {e}"})
                    return
                self.reply(200, {"ok": True})
                return
            if self.path == "/agent":
                try:
                    ssm_run.configure(data)
                except (TypeError, ValueError) as e:
                    self.reply(400, {"error": f"/agent: {e}"})
                    return
                self.reply(200, {"ok": True})
                return
            if self.path == "/sts":
                sts.configure(data)
                self.reply(200, {"ok": True})
                return
            if self.path == "/windows" and data.get("wrong_key"):
                other_key()  # made here, not at a launch holding LOCK
            with LOCK:
                if self.path == "/fault" and data.get("clear"):
                    STATE["faults"].clear()  # EC2 recovers: the faults still pending are dropped
                elif self.path == "/fault":
                    data.setdefault("count", 1)
                    data.setdefault("status", 400)
                    STATE["faults"].append(data)
                elif self.path == "/deny":
                    STATE["deny"] = set(data.get("actions", []))
                elif self.path == "/policy":
                    STATE["policy"] = data.get("document")
                elif self.path == "/pending":
                    STATE["pending_describes"] = int(data.get("describes", 0))
                elif self.path == "/throttle":
                    STATE["throttle"] = {} if data.get("enabled") else None
                elif self.path == "/latency":
                    STATE["latency"] = {k: float(v) for k, v in data.items()}
                elif self.path == "/consistency":
                    STATE["windows"] = {kind: float(data.get(kind, 0.0)) for kind in ("key_pair", "instance")}
                elif self.path == "/chaos":
                    STATE["chaos"] = chaos_config(data)
                elif self.path == "/status":
                    checks = {k: data[k] for k in ("system", "instance") if k in data}
                    STATE["status"].setdefault(data.get("instance_id") or "*", {}).update(checks)
                elif self.path == "/timing":
                    try:
                        STATE["timing"] = timing_config(data)
                    except (TypeError, ValueError, IndexError) as e:
                        self.reply(400, {"error": f"/timing: {e}"})
                        return
                elif self.path == "/shutting_down":
                    STATE["shutting_down_s"] = float(data.get("seconds", 0.0))
                elif self.path == "/console":
                    instance_id = data.get("instance_id")
                    if "text" in data:
                        if instance_id:
                            STATE["console"][instance_id] = data["text"]
                        else:
                            STATE["console_default"] = data["text"]
                    if "after_reboot" in data:
                        if instance_id:
                            STATE["console_after"][instance_id] = data["after_reboot"]
                        else:
                            STATE["console_after_default"] = data["after_reboot"]
                elif self.path == "/windows":
                    STATE["password_cfg"] = {
                        "password_s": float(data.get("password_s", 0.0)),
                        "password": data.get("password"),
                        "wrong_key": bool(data.get("wrong_key", False)),
                    }
                elif self.path != "/reset":
                    self.reply(404, {"error": "unknown path"})
                    return
            if self.path == "/reset":
                reset_state()
                import urllib.request

                urllib.request.urlopen(
                    urllib.request.Request(f"http://127.0.0.1:{moto_port}/moto-api/reset", method="POST")
                ).read()
                with LOCK:  # /timeline counts from the moment the reset answers, moto's own included
                    STATE["epoch"] = time.monotonic()
            self.reply(200, {"ok": True})

    return Control


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int)
    parser.add_argument("--control-port", type=int)
    parser.add_argument("--self-test", action="store_true", help="check every feature on free loopback ports")
    args = parser.parse_args()
    if args.self_test:
        import moto_launcher_selftest  # next to this file

        sys.exit(moto_launcher_selftest.main(os.path.abspath(__file__)))
    if args.port is None or args.control_port is None:
        parser.error("--port and --control-port are required")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    # Each timed instance's service is a listening socket (and each probe a connection): 1,000
    # instances need more descriptors than the usual soft limit of 1,024.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
    server.start()
    control = ThreadingHTTPServer(("127.0.0.1", args.control_port), control_handler(args.port))
    print(f"moto on 127.0.0.1:{args.port}, control on 127.0.0.1:{args.control_port}", flush=True)
    try:
        control.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
