"""Serve a directory: ``python -m appliance.tftp --root DIR --listen 127.0.0.1:6969``.

A demo and benchmark entry point; the appliance itself runs ``TftpServer``
with its own provider.
"""

from __future__ import annotations

import argparse
import signal
import sys

from ..content import DirectoryProvider, TransferRecord
from .server import TftpServer
from .worker import default_worker_count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m appliance.tftp", description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="directory to serve")
    parser.add_argument("--listen", action="append", default=[],
                        help="HOST:PORT, repeatable (default 127.0.0.1:6969); [::]:69 for IPv6")
    parser.add_argument("--timeout", type=float, default=1.0, help="retransmit timeout in seconds")
    parser.add_argument("--max-blksize", type=int, default=None)
    parser.add_argument("--max-sessions", type=int, default=512)
    parser.add_argument("--workers", type=int, default=None,
                        help="transfer worker processes (default: one per CPU, none on a single CPU)")
    parser.add_argument("--reuse-port", action="store_true",
                        help="SO_REUSEPORT: run several servers on one port, the kernel spreads clients")
    parser.add_argument("--verbose", "-v", action="store_true", help="print one line per transfer")
    args = parser.parse_args(argv)

    def report(record: TransferRecord) -> None:
        print(f"{record.client[0]}:{record.client[1]} {record.path} {record.outcome} "
              f"{record.bytes_sent}/{record.size} B {record.duration:.3f}s "
              f"blksize={record.blksize} windowsize={record.windowsize}", flush=True)

    server = TftpServer(DirectoryProvider(args.root), listen=args.listen or ["127.0.0.1:6969"],
                        on_transfer=report if args.verbose else None, timeout=args.timeout,
                        max_blksize=args.max_blksize, max_sessions=args.max_sessions,
                        workers=default_worker_count() if args.workers is None else args.workers,
                        reuse_port=args.reuse_port)
    server.start()
    signal.signal(signal.SIGTERM, lambda *_: server.stop(wait=0))
    signal.signal(signal.SIGINT, lambda *_: server.stop(wait=0))
    print("listening on " + " ".join(f"{h}:{p}" for h, p in server.addresses), flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
