"""Start-to-first-answer: ``python -m bench.startup`` (``python -m bench.vm`` runs it in the lab VM).

Starts ``netboot serve`` on a demo store (iSCSI enabled, so LIO support is
loaded as on a real appliance) and, for comparison, a minimal script that
imports the same libraries (tftpy, rtslib-fb) and serves a directory with
tftpy's server.  Each run measures the wall time from process start to the
first DATA packet for an existing file (an RRQ every 20 ms from a fresh
port until one is answered; the probe file is small, one ACK ends it).  Prints every run, the medians and the ratio.

``--baseline DIR`` also starts ``netboot serve`` from another checkout (e.g.
main before a change), interleaved in the same run.

Both run byte-compiled, as installed packages are (pip compiles on install):
the project is compiled into the checkout's git-ignored ``__pycache__`` first
(where the checkout is writable; the lab compiles it before the VM starts).
"""

from __future__ import annotations

import argparse
import compileall
import os
import py_compile
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.tftp import HOST, REPO, free_port, stop_process, tftp_probe

PROBE_INTERVAL = 0.02
START_TIMEOUT = 120.0

MINIMAL_SERVER = """
import sys, rtslib_fb, tftpy
tftpy.TftpServer(sys.argv[1]).listen(sys.argv[2], int(sys.argv[3]))
"""


def time_to_answer(argv: list[str], port: int, path: str, env: dict[str, str] | None = None,
                   cwd: Path = REPO) -> float:
    started = time.monotonic()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        while time.monotonic() - started < START_TIMEOUT:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace")[-800:]
                raise RuntimeError(f"{argv[:4]} exited ({proc.returncode}) before answering: {err}")
            if tftp_probe(port, path, timeout=PROBE_INTERVAL):
                return time.monotonic() - started
        raise RuntimeError(f"{argv[:4]} did not answer within {START_TIMEOUT:.0f} s")
    finally:
        stop_process(proc, wait=20)


def demo_setup(workdir: Path, port: int) -> tuple[Path, str, bytes]:
    """A demo store + config with iSCSI enabled; (config, a served path, its content).

    The path is a small generated file (one DATA block, so one ACK ends the probe)."""
    from appliance.boot import Generated
    from appliance.config import load_config
    from appliance.control.snapshot import build_snapshot
    from appliance.control.state import StateStore
    from appliance.demo import build_demo

    layout = build_demo(workdir, port=port)
    text = layout.config.read_text().replace("[iscsi]\nenable = false",
                                             "[iscsi]\nenable = true\nportals = [\"127.0.0.1:3260\"]\n"
                                             # serve on where LIO is missing (this host, not the VM)
                                             "on_failure = \"degraded\"")
    layout.config.write_text(text)
    config = load_config(layout.config)
    snapshot = build_snapshot(config, StateStore(config.server.state_dir).load().hosts)
    for hs in snapshot.hosts.values():
        for path, source in sorted(hs.tree.files.items()):
            if isinstance(source, Generated) and 0 < len(source.data) < 512:
                return layout.config, path, source.data
    raise RuntimeError("demo store has no small generated file to fetch")


def byte_compile_project(repo: Path = REPO) -> None:
    """The project's byte-code (checked-hash: never used once its source changed), where the
    checkout is writable: with ``PYTHONDONTWRITEBYTECODE`` set each start would compile it."""
    package = repo / "appliance"
    if os.access(package, os.W_OK):
        compileall.compile_dir(package, quiet=1, invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)


BASELINE = "netboot serve (baseline)"


def _env_for(repo: Path) -> dict[str, str]:
    """This environment with ``repo`` first on the path, in place of this checkout."""
    env = dict(os.environ)
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != REPO]
    env["PYTHONPATH"] = os.pathsep.join([str(repo), *rest])
    return env


def measure(repeat: int, baseline: Path | None = None) -> dict[str, list[float]]:
    byte_compile_project()
    times: dict[str, list[float]] = {"netboot serve": [], "tftpy + rtslib script": []}
    env = _env_for(REPO)
    if baseline is not None:
        byte_compile_project(baseline)
        times[BASELINE] = []
    with tempfile.TemporaryDirectory(prefix="netboot-startup-") as tmp:
        port = free_port()
        config, path, data = demo_setup(Path(tmp) / "demo", port)
        plain = Path(tmp) / "plain"
        plain.mkdir()
        (plain / "probe.txt").write_bytes(data)
        for _ in range(repeat):             # interleaved: load drifts hit both alike
            times["netboot serve"].append(time_to_answer(
                [sys.executable, "-m", "appliance.cli.main", "-c", str(config), "serve"], port, path, env))
            if baseline is not None:
                times[BASELINE].append(time_to_answer(
                    [sys.executable, "-m", "appliance.cli.main", "-c", str(config), "serve"], port, path,
                    _env_for(baseline), cwd=baseline))
            mport = free_port()
            times["tftpy + rtslib script"].append(time_to_answer(
                [sys.executable, "-c", MINIMAL_SERVER, str(plain), HOST, str(mport)], mport, "probe.txt", env))
    return times


def report(times: dict[str, list[float]], where: str) -> str:
    lines = [f"start to first DATA ({where}), seconds:"]
    medians = {}
    for name, values in times.items():
        medians[name] = statistics.median(values)
        lines.append(f"  {name:24s} median {medians[name]:.2f}  best {min(values):.2f}  runs "
                     + " ".join(f"{v:.2f}" for v in values))
    best = {name: min(values) for name, values in times.items()}
    ours, ref = "netboot serve", "tftpy + rtslib script"
    # The best run too: on a shared machine the load only ever adds time, so it is the least noisy.
    lines.append(f"  ratio netboot serve / minimal script: {medians[ours] / medians[ref]:.2f}× (best runs "
                 f"{best[ours] / best[ref]:.2f}×)")
    if BASELINE in medians:
        lines.append(f"  ratio baseline / minimal script: {medians[BASELINE] / medians[ref]:.2f}× (best runs "
                     f"{best[BASELINE] / best[ref]:.2f}×)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="another checkout whose netboot serve is measured too")
    parser.add_argument("--where", default="host", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    baseline = args.baseline.resolve() if args.baseline else None
    print(report(measure(max(1, args.repeat), baseline), args.where))
    return 0


if __name__ == "__main__":
    sys.exit(main())
