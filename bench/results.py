"""bench/RESULTS.md: each benchmark owns a marked block and rewrites only that block."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def write_block(name: str, heading: str, text: str, results: Path = RESULTS) -> None:
    """Replace the text between ``<!-- name: begin -->`` and ``<!-- name: end -->``, or append
    it under ``## heading`` when the markers are missing."""
    begin, end = f"<!-- {name}: begin -->", f"<!-- {name}: end -->"
    block = f"{begin}\n{text}\n{end}"
    current = results.read_text() if results.exists() else ""
    if begin in current and end in current:
        head, _, rest = current.partition(begin)
        _, _, tail = rest.partition(end)
        results.write_text(head + block + tail)
    else:
        results.write_text(current.rstrip("\n") + f"\n\n## {heading}\n\n" + block + "\n")
