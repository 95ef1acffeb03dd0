"""How EC2 ends instances that amiprobe did not end, for moto_launcher.py: /fate and /image's
cross-account, encrypted images.

EC2 ends an instance on its own and says why in DescribeInstances' StateReason: a launch from an
image whose snapshots are encrypted with a KMS key the account can't use goes `pending` ->
`terminated` with `Client.InternalError`; a Spot reclaim gives `Server.SpotInstanceTermination`; a
guest that powers itself off gives `Client.InstanceInitiatedShutdown` (`stopped` or `terminated`, as
its InstanceInitiatedShutdownBehavior says). moto ends instances only when asked to, with
`Client.UserInitiatedShutdown`. Here:

  POST /fate {"image_id": "ami-...", "after": "pending", "delay_s": 2, "code": "Client.InternalError",
              "message": "Client.InternalError: Client error on launch", "state": "terminated"}

makes every instance launched from now on from that image end `delay_s` seconds after its
RunInstances, in `state` (`terminated` or `stopped`), with that StateReason. With "after": "pending"
the instance stays `pending` until then (it never runs); with "after": "running" it ends only once it
is `running` (at once if it was still `pending` when its time came, then as soon as it runs). moto's
own Instance.terminate() / stop() end it (its network interfaces go as on a TerminateInstances), then
StateReason and StateTransitionReason are set as EC2 sets them. A later fate for the same image
replaces the earlier one; {"image_id": "ami-...", "code": null} drops it.

/image takes two more keys here: "owner_id" (the account that owns the AMI: another account's, as a
shared image is) and "encrypted": true (its block device mappings answer `Encrypted: true` and a
`KmsKeyId` of that owner's, as DescribeImages does for an image whose snapshots are encrypted).
"""

import threading
import time

from moto.ec2.models.amis import Ami
from moto.ec2.models.instances import InstanceBackend, StateReason

LOCK = threading.Lock()
STATE = {
    # image id -> the fate of the instances launched from it from now on
    "fates": {},
    # instance id -> {"instance", "fate", "due"} until it has met its fate
    "doomed": {},
    # image ids whose snapshots are encrypted -> the KMS key's ARN
    "encrypted": {},
}

AFTER = ("pending", "running")
STATES = ("terminated", "stopped")


def reset():
    with LOCK:
        for value in STATE.values():
            value.clear()


def set_fate(data):
    """The /fate body checked and kept; ValueError (the answer's 400) for a body that makes no sense."""
    image_id = data.get("image_id")
    if not isinstance(image_id, str) or not image_id.startswith("ami-"):
        raise ValueError(f"image_id {image_id!r}: expected an AMI id")
    code = data.get("code")
    with LOCK:
        if code is None:
            STATE["fates"].pop(image_id, None)
            return
    after = data.get("after", "pending")
    state = data.get("state", "terminated")
    if after not in AFTER:
        raise ValueError(f"after {after!r}: expected one of {', '.join(AFTER)}")
    if state not in STATES:
        raise ValueError(f"state {state!r}: expected one of {', '.join(STATES)}")
    fate = {
        "after": after,
        "delay_s": float(data.get("delay_s", 1.0)),
        "code": str(code),
        "message": str(data.get("message") or f"{code}: {code}"),
        "state": state,
    }
    with LOCK:
        STATE["fates"][image_id] = fate


def launched(instances):
    """Just-launched instances whose image has a fate are doomed; those to end before running stay
    `pending` until then (moto makes them `running` at once)."""
    now = time.monotonic()
    with LOCK:
        for instance in instances:
            fate = STATE["fates"].get(instance.image_id)
            if fate is None:
                continue
            STATE["doomed"][instance.id] = {"instance": instance, "fate": fate, "due": now + fate["delay_s"]}
            if fate["after"] == "pending":
                instance._state.name, instance._state.code = "pending", 0


def settle():
    """Doomed instances whose time has come meet their fate (lazily, on the next EC2 call, as the
    launcher's other clocks do). An instance something else ended first (a TerminateInstances) is let
    go: it already has its reason."""
    now = time.monotonic()
    with LOCK:
        for instance_id, doom in list(STATE["doomed"].items()):
            instance, fate = doom["instance"], doom["fate"]
            if instance._state.name in ("shutting-down", "terminated", "stopping", "stopped"):
                del STATE["doomed"][instance_id]
                continue
            if now < doom["due"] or (fate["after"] == "running" and instance._state.name != "running"):
                continue
            end(instance, fate)
            del STATE["doomed"][instance_id]


def end(instance, fate):
    """Ends the instance as EC2 does on its own: moto's own stop or terminate, then EC2's reason."""
    if fate["state"] == "stopped":
        instance.stop()
    else:
        instance.terminate()
    instance.state_reason = StateReason(fate["message"], fate["code"])
    instance._reason = f"Service initiated ({time.strftime('%Y-%m-%d %H:%M:%S GMT', time.gmtime())})"
    if fate["code"] == "Client.InstanceInitiatedShutdown":
        instance._reason = "User initiated"  # EC2 says so of a shutdown from inside the guest


def dress_image(ami, data):
    """/image's "owner_id" and "encrypted" keys on a just-registered AMI."""
    if data.get("owner_id"):
        ami.owner_id = str(data["owner_id"])
    if data.get("encrypted"):
        key = f"arn:aws:kms:{ami.ec2_backend.region_name}:{ami.owner_id}:key/{ami.id}-key"
        with LOCK:
            STATE["encrypted"][ami.id] = key


def encrypted_mappings(original):
    """Ami.block_device_mappings, with `Encrypted` and `KmsKeyId` on an encrypted image's EBS ones."""

    def get(self):
        mappings = original.fget(self)
        with LOCK:
            key = STATE["encrypted"].get(self.id)
        if key is None:
            return mappings
        for mapping in mappings:
            if "Ebs" in mapping:
                mapping["Ebs"] = dict(mapping["Ebs"], Encrypted=True, KmsKeyId=key)
        return mappings

    return property(get)


def install():
    """Wraps moto's launch (whatever wraps it already stays inside) and its AMIs' block devices."""
    original_run_instances = InstanceBackend.run_instances

    def run_instances(self, *args, **kwargs):
        reservation = original_run_instances(self, *args, **kwargs)
        launched(reservation.instances)
        return reservation

    InstanceBackend.run_instances = run_instances
    Ami.block_device_mappings = encrypted_mappings(Ami.block_device_mappings)
