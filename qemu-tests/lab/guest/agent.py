"""The lab VM's command agent: JSON lines over a virtio-serial port.

Request:  {"id": N, "argv": [...]} or {"id": N, "sh": "..."}; optional
          "timeout" (s), "input" (text), "env" (dict), "cwd".
          {"id": N, "ping": true} answers {"id": N, "pong": true, "uptime": s}.
Reply:    {"id": N, "rc": int, "stdout": str, "stderr": str, "seconds": float}
          (rc 124 on timeout, 127 when the program does not exist).
One request at a time; long-running services are started with sh and "&".
"""

import json
import os
import subprocess
import sys
import time

PORT_NAME = "lab.agent"


def find_port():
    base = "/sys/class/virtio-ports"
    for _ in range(200):
        if os.path.isdir(base):
            for dev in sorted(os.listdir(base)):
                try:
                    with open(os.path.join(base, dev, "name")) as f:
                        if f.read().strip() == PORT_NAME:
                            return "/dev/" + dev
                except OSError:
                    pass
        time.sleep(0.05)
    raise SystemExit("agent: no virtio port named " + PORT_NAME)


def uptime():
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])


def handle(req):
    rid = req.get("id")
    if req.get("ping"):
        return {"id": rid, "pong": True, "uptime": uptime()}
    env = dict(os.environ)
    env.update(req.get("env") or {})
    argv = req["argv"] if "argv" in req else ["/bin/sh", "-c", req["sh"]]
    started = time.monotonic()
    try:
        proc = subprocess.run(argv, input=req.get("input"), capture_output=True, text=True, errors="replace",
                              env=env, cwd=req.get("cwd") or "/", timeout=req.get("timeout") or 600)
        rc, out, err = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc = 124
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = (exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")) + "\nagent: timed out"
    except OSError as exc:
        rc, out, err = 127, "", "agent: %s" % exc
    return {"id": rid, "rc": rc, "stdout": out, "stderr": err, "seconds": round(time.monotonic() - started, 3)}


def main():
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    path = find_port()
    fd = os.open(path, os.O_RDWR)
    buf = b""
    print("agent: listening on %s" % path, flush=True)
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            time.sleep(0.05)   # host side not connected yet
            continue
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if not line.strip():
                continue
            try:
                reply = handle(json.loads(line))
            except Exception as exc:  # a bad request must not kill the agent
                reply = {"id": None, "rc": 125, "stdout": "", "stderr": "agent: %r" % exc}
            data = (json.dumps(reply) + "\n").encode()
            while data:
                n = os.write(fd, data)
                data = data[n:]


if __name__ == "__main__":
    sys.exit(main())
