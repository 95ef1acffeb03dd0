"""moto's EC2 server on loopback, extended with what the amiprobe tests need and moto lacks.

    python moto_launcher.py --port P --control-port C

Starts moto in-process (ThreadedMotoServer) on 127.0.0.1:P and a small control API on 127.0.0.1:C:

  POST /fault    {"action": "RunInstances", "code": "...", "status": 500, "count": 1,
                  "when": {"InstanceType": "t3.micro"}}      the next `count` matching calls fail
  POST /pending  {"describes": N}       instances launched from now on stay `pending` for N describes
  POST /console  {"text": "...", "instance_id": optional}    console output (default for all, or one)
  POST /throttle {"enabled": true}     throttle like EC2: per-class token buckets at EC2's published
                                       rates, answering RequestLimitExceeded when one is empty
  GET  /calls                           {"Action": count, ...} since the last reset
  POST /reset                           clears faults, counters and moto's state

Additions to moto's EC2: GetConsoleScreenshot answers with a real JPEG (a frame drawn per call),
GetConsoleOutput with the text set above, faults with a real EC2 error body and HTTP status, and
instances held pending. Everything listens on 127.0.0.1 only.
"""

import argparse
import base64
import io
import json
import logging
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from moto.core.responses import ActionResult
from moto.ec2.responses import EC2Response
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from PIL import Image, ImageDraw

LOCK = threading.Lock()
STATE = {
    "faults": [],  # [{"action", "code", "status", "count", "when"}]
    "calls": Counter(),
    "pending_describes": 0,
    "pending": {},  # instance id -> describes left
    "seen": set(),
    "console": {},  # instance id -> text
    "console_default": "amiprobe test console\nbooting...\nhttpd: listening on :80\nami-test login: \n",
    "frames": Counter(),
    "throttle": None,  # class -> [tokens, last refill] when enabled
}

# EC2's published per-account limits: (burst, per second).
RATES = {
    "describe": (100, 20.0),
    "describe_instances_unfiltered": (50, 10.0),
    "run_instances": (5, 2.0),
    "terminate_instances": (100, 5.0),
    "mutating": (50, 5.0),
}


def rate_class(action, params):
    if action == "RunInstances":
        return "run_instances"
    if action == "TerminateInstances":
        return "terminate_instances"
    if action == "DescribeInstances" and not any(k.startswith("Filter") or k.startswith("InstanceId") for k in params):
        return "describe_instances_unfiltered"
    if action.startswith(("Describe", "Get")):
        return "describe"
    return "mutating"


def throttled(action, params):
    """Takes a token from the action's bucket; True when there is none (EC2 would throttle)."""
    with LOCK:
        buckets = STATE["throttle"]
        if buckets is None:
            return False
        cls = rate_class(action, params)
        burst, rate = RATES[cls]
        tokens, last = buckets.setdefault(cls, [float(burst), time.monotonic()])
        now = time.monotonic()
        tokens = min(float(burst), tokens + (now - last) * rate)
        if tokens < 1.0:
            buckets[cls] = [tokens, now]
            STATE["calls"]["throttled"] += 1
            return True
        buckets[cls] = [tokens - 1.0, now]
        return False


def reset_state():
    with LOCK:
        STATE["faults"].clear()
        STATE["calls"].clear()
        STATE["pending_describes"] = 0
        STATE["pending"].clear()
        STATE["seen"].clear()
        STATE["console"].clear()
        STATE["frames"].clear()
        STATE["throttle"] = None


def error_body(code, message):
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors>"
        f"<RequestID>{uuid.uuid4()}</RequestID></Response>"
    )


def take_fault(action, params):
    with LOCK:
        for fault in STATE["faults"]:
            if fault["count"] <= 0 or fault["action"] not in (action, "*"):
                continue
            when = fault.get("when") or {}
            if all(params.get(k, [None])[0] == v for k, v in when.items()):
                fault["count"] -= 1
                return fault
    return None


original_call_action = EC2Response.call_action


def call_action(self):
    action = self._get_action()
    with LOCK:
        STATE["calls"][action] += 1
    if throttled(action, self.querystring):
        body = error_body("RequestLimitExceeded", "Request limit exceeded.")
        return 503, {"status": 503, "Content-Type": "text/xml"}, body
    fault = take_fault(action, self.querystring)
    if fault:
        body = error_body(fault["code"], fault.get("message", f"injected {fault['code']}"))
        return fault["status"], {"status": fault["status"], "Content-Type": "text/xml"}, body
    return original_call_action(self)


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


original_describe_instances = EC2Response.describe_instances


def describe_instances(self):
    hold_pending(self)
    return original_describe_instances(self)


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
    return ActionResult(
        {
            "InstanceId": instance.id,
            "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "Output": base64.b64encode(text.encode()).decode(),
        }
    )


EC2Response.call_action = call_action
EC2Response.describe_instances = describe_instances
EC2Response.get_console_screenshot = get_console_screenshot
EC2Response.get_console_output = get_console_output


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
            if self.path == "/calls":
                with LOCK:
                    self.reply(200, dict(STATE["calls"]))
            elif self.path == "/ready":
                self.reply(200, {"ready": True})
            else:
                self.reply(404, {"error": "unknown path"})

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            data = json.loads(self.rfile.read(length) or b"{}")
            with LOCK:
                if self.path == "/fault":
                    data.setdefault("count", 1)
                    data.setdefault("status", 400)
                    STATE["faults"].append(data)
                elif self.path == "/pending":
                    STATE["pending_describes"] = int(data.get("describes", 0))
                elif self.path == "/throttle":
                    STATE["throttle"] = {} if data.get("enabled") else None
                elif self.path == "/console":
                    if data.get("instance_id"):
                        STATE["console"][data["instance_id"]] = data["text"]
                    else:
                        STATE["console_default"] = data["text"]
                elif self.path != "/reset":
                    self.reply(404, {"error": "unknown path"})
                    return
            if self.path == "/reset":
                reset_state()
                import urllib.request

                urllib.request.urlopen(
                    urllib.request.Request(f"http://127.0.0.1:{moto_port}/moto-api/reset", method="POST")
                ).read()
            self.reply(200, {"ok": True})

    return Control


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--control-port", type=int, required=True)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

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
