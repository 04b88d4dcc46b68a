"""Serve a directory over HTTP: ``python -m appliance.http --root DIR --listen 127.0.0.1:8080``.

A demo and benchmark entry point; the appliance itself runs ``HttpServer``
with its own provider.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from ..content import DirectoryProvider, TransferRecord
from ..listen import parse_listen
from .server import HttpServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m appliance.http", description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="directory to serve")
    parser.add_argument("--listen", action="append", default=[],
                        help="HOST:PORT, repeatable (default 127.0.0.1:8080); [::]:80 for IPv6")
    parser.add_argument("--workers", type=int, default=1, help="event loops (threads)")
    parser.add_argument("--verbose", "-v", action="store_true", help="print one line per transfer")
    args = parser.parse_args(argv)

    def report(record: TransferRecord) -> None:
        print(f"{record.client[0]}:{record.client[1]} {record.path} {record.outcome} "
              f"{record.bytes_sent}/{record.size} B {record.duration:.3f}s", flush=True)

    server = HttpServer(DirectoryProvider(args.root),
                        [parse_listen(a) for a in args.listen or ["127.0.0.1:8080"]],
                        on_transfer=report if args.verbose else None, workers=args.workers)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    server.run_in_thread()
    print("listening on " + " ".join(f"{h}:{p}" for h, p in server.addresses), flush=True)
    stopped.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
