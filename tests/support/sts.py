"""STS AssumeRole for the amiprobe tests, on top of moto's: who each call came as, sessions shorter
than STS allows (so that a test sees credentials renewed within seconds), and a role's trust policy
as far as the external id goes (moto lets anyone assume any role).

moto_launcher.py hands over: the access key of every EC2 call (`access_key`), AssumeRole
(`assume_role`), POST /sts (`configure`) and GET /sts (`status`).
"""

import re
import threading
import time
import uuid

LOCK = threading.Lock()
STATE = {}


def reset():
    with LOCK:
        # session_s: every AssumeRole's DurationSeconds, whatever was asked (None: as asked).
        # external_id: the one the trust policy requires (None: any, or none).
        STATE.update(session_s=None, external_id=None, sessions={}, expired_uses=[], calls=[])


reset()


def configure(data):
    """POST /sts {"session_s": 20, "external_id": "x"}: the knobs, each left as it was when absent."""
    with LOCK:
        for key in ("session_s", "external_id"):
            if key in data:
                STATE[key] = data[key]


def status():
    """GET /sts: every session AssumeRole gave ({"access_key", "expires"} as Unix seconds, in order),
    each call signed with one of them after it expired ({"action", "access_key", "late_s"}), and every
    STS call ({"action": "sts:GetCallerIdentity", "access_key"}: /requests has EC2's and SSM's, not STS's)."""
    with LOCK:
        sessions = [{"access_key": k, "expires": e} for k, e in STATE["sessions"].items()]
        return {"sessions": sessions, "expired_uses": list(STATE["expired_uses"]), "calls": list(STATE["calls"])}


def access_key(handler, action):
    """The access key id a call was signed with (the Authorization header's Credential=), noting a
    use of an assumed role's key after its session ended."""
    found = re.search(r"Credential=([^/,\s]+)/", handler.headers.get("Authorization", ""))
    key = found.group(1) if found else None
    now = time.time()
    with LOCK:
        expires = STATE["sessions"].get(key)
        if expires is not None and now > expires:
            STATE["expired_uses"].append({"action": action, "access_key": key, "late_s": now - expires})
        if action.startswith("sts:"):
            STATE["calls"].append({"action": action, "access_key": key})
    return key


def assume_role(handler, original):
    """AssumeRole: refused (AccessDenied, as IAM answers a trust policy's refusal) when the external id
    is not the one required; else moto's, its DurationSeconds replaced by session_s when that is set."""
    params = handler.querystring
    with LOCK:
        required, session_s = STATE["external_id"], STATE["session_s"]
    if required is not None and params.get("ExternalId", [None])[0] != required:
        arn = params.get("RoleArn", ["?"])[0]
        body = (
            '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
            "<Code>AccessDenied</Code><Message>User: arn:aws:iam::123456789012:user/test is not authorized "
            f"to perform: sts:AssumeRole on resource: {arn}</Message></Error><RequestId>{uuid.uuid4()}"
            "</RequestId></ErrorResponse>"
        )
        return 403, {"status": 403, "Content-Type": "text/xml"}, body
    duration = int(params.get("DurationSeconds", ["3600"])[0])
    if session_s is not None:
        duration = int(session_s)
        params["DurationSeconds"] = [str(duration)]
        # moto's STS reads its parsed parameters (a dict), not the query string.
        if isinstance(getattr(handler, "params", None), dict):
            handler.params["DurationSeconds"] = duration
    started = time.time()
    answer = original(handler)
    status_code, _, body = answer
    text = body.decode() if isinstance(body, bytes) else str(body)
    issued = re.search(r"<AccessKeyId>([^<]+)</AccessKeyId>", text)
    if int(status_code) == 200 and issued:
        with LOCK:
            STATE["sessions"][issued.group(1)] = started + duration
    return answer
