"""Inside the QEMU lab's server VM: ``python -m bench.vm`` (boots it, runs both parts, stops it).

The VM is the end-to-end suite's server VM (TCG, the repository shared
read-only over 9p, one vCPU unless ``--smp``), where per-packet CPU cost
dominates.  Inside it:

- start-to-first-answer of ``netboot serve`` vs a minimal tftpy + rtslib
  script (``bench.startup``), byte-compiled as the lab runs it and with the
  byte-code ignored (everything compiled from source at each start);
  ``--baseline DIR`` adds another checkout's ``netboot serve`` (before/after
  a change in the same runs);
- throughput of this server (``python -m appliance.tftp``) vs tftpy's server
  for an 8 MiB file (a kernel), same client (busybox tftp, blksize 1432 as
  iPXE asks), runs interleaved; prints seconds per run, medians and the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.tftp import HOST, REPO, free_port, stop_process, tftp_probe

FILE_SIZE = 8 * 1024 * 1024
BLKSIZE = 1432

TFTPY_SERVER = """
import logging, sys, tftpy
logging.disable(logging.CRITICAL)
tftpy.TftpServer(sys.argv[1]).listen(sys.argv[2], int(sys.argv[3]))
"""


def _serve(argv: list[str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{argv[:3]} exited ({proc.returncode})")
        if tftp_probe(port, "probe.bin"):
            time.sleep(2.0)             # let transfer workers (if any) come up
            return proc
    stop_process(proc, wait=20)
    raise RuntimeError(f"{argv[:3]} did not answer")


def throughput(repeat: int) -> str:
    with tempfile.TemporaryDirectory(prefix="tftp-vm-") as tmp:
        root = Path(tmp)
        (root / "big.bin").write_bytes(os.urandom(FILE_SIZE))
        (root / "probe.bin").write_bytes(b"probe")
        ports = {"appliance": free_port(), "tftpy server": free_port()}
        argv = {"appliance": [sys.executable, "-m", "appliance.tftp", "--root", tmp,
                              "--listen", f"{HOST}:{ports['appliance']}"],
                "tftpy server": [sys.executable, "-c", TFTPY_SERVER, tmp, HOST, str(ports["tftpy server"])]}
        procs = {}
        times: dict[str, list[float]] = {name: [] for name in argv}
        try:
            for name in argv:
                procs[name] = _serve(argv[name], ports[name])
            for _ in range(repeat):
                for name in argv:
                    out = root / "out.bin"
                    started = time.monotonic()
                    subprocess.run(["busybox", "tftp", "-g", "-r", "big.bin", "-l", str(out), "-b", str(BLKSIZE),
                                    HOST, str(ports[name])], check=True, timeout=600, capture_output=True)
                    times[name].append(time.monotonic() - started)
                    if out.stat().st_size != FILE_SIZE:
                        raise RuntimeError(f"{name}: short download")
                    out.unlink()
        finally:
            for proc in procs.values():
                stop_process(proc, wait=20)
    medians = {name: statistics.median(v) for name, v in times.items()}
    lines = [f"8 MiB over TFTP in the lab VM (busybox tftp, blksize {BLKSIZE}), seconds:"]
    for name, values in times.items():
        lines.append(f"  {name:14s} median {medians[name]:.2f} ({FILE_SIZE / medians[name] / 1e6:.2f} MB/s)  runs "
                     + " ".join(f"{v:.2f}" for v in values))
    lines.append(f"  ratio appliance / tftpy server throughput: {medians['tftpy server'] / medians['appliance']:.2f}×")
    return "\n".join(lines)


GUEST_BASELINE = "/lab/baseline"


def in_vm(repeat: int, smp: int, startup_only: bool = False, baseline: Path | None = None) -> str:
    sys.path.insert(0, str(REPO / "qemu-tests"))
    from lab import Share, project_vm
    from lab.project import compile_project

    # As the end-to-end suite runs it, everything comes byte-compiled (the image's stdlib, the
    # dependencies, the project before the VM starts).  For comparison, startup also runs with
    # the byte-code ignored (a pycache prefix pointing at an empty directory): every process
    # compiles the stdlib, the dependencies and the project from source.
    no_bytecode = "export PYTHONPYCACHEPREFIX=/tmp/no-pyc; "
    shares, startup = [], "bench.startup"
    if baseline is not None:      # another checkout's netboot serve, in the same runs
        compile_project(baseline)
        shares.append(Share(baseline, GUEST_BASELINE, readonly=True, cached=True))
        startup += f" --baseline {GUEST_BASELINE}"
    with project_vm(smp=smp, memory_mb=1024, shares=shares) as vm:
        outputs = []
        runs = [(f"{startup} --where 'lab VM, no byte-code'", no_bytecode),
                (f"{startup} --where 'lab VM, byte-compiled'", ""),
                *([] if startup_only else [("bench.vm --inside", "")])]
        for module, prefix in runs:
            r = vm.run(f"cd /lab/repo && {prefix}TMPDIR=/tmp python3 -m {module} --repeat {repeat}", timeout=1800)
            if not r.ok:
                raise RuntimeError(f"in VM: {module}: exit {r.rc}\n{r.stdout}\n{r.stderr[-2000:]}")
            outputs.append(r.stdout.strip())
        return f"lab VM, {smp} vCPU:\n" + "\n".join(outputs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.vm", description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--smp", type=int, default=1, help="vCPUs of the VM (the end-to-end server VM has 1)")
    parser.add_argument("--startup-only", action="store_true", help="skip the throughput part")
    parser.add_argument("--baseline", type=Path,
                        help="another checkout (e.g. a worktree of main) whose start is measured in the same runs")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    baseline = args.baseline.resolve() if args.baseline else None
    print(throughput(max(1, args.repeat)) if args.inside
          else in_vm(max(1, args.repeat), args.smp, args.startup_only, baseline), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
