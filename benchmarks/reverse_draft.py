"""How long drafting the reverse of the newest migration takes on the largest Drizzle sample.

    uv run python benchmarks/reverse_draft.py [--repeat 5]

``rollbot forward-fix draft`` reads the journal and the previous snapshot and drafts
the reverse statements while a person waits in an incident: the target is a median
under one second on Dokploy's journal (186 entries). Moved here from the test suite,
where a wall-clock assertion fails whenever the machine is busy. On demand only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from providers.drizzle.journal import Journal, read_journal  # noqa: E402
from providers.drizzle.reverse import draft_reverse  # noqa: E402

SAMPLE = ROOT.parent / "shared" / "samples" / "drizzle" / "Dokploy__dokploy"
TARGET_SECONDS = 1.0


def draft_seconds(journal: Journal) -> float:
    """Wall time of drafting the reverse of the journal's newest entry."""
    started = time.perf_counter()
    draft_reverse(journal)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sample", type=Path, default=SAMPLE)
    args = parser.parse_args(argv)
    journal = read_journal(args.sample)
    runs = [draft_seconds(journal) for _ in range(args.repeat)]
    median = statistics.median(runs)
    verdict = "ok" if median < TARGET_SECONDS else "MISSED"
    print(
        f"{args.sample.name}: draft of the newest entry, median {median:.3f}s over "
        f"{len(runs)} runs (min {min(runs):.3f}s, max {max(runs):.3f}s); "
        f"target < {TARGET_SECONDS:g}s  {verdict}"
    )
    return 0 if median < TARGET_SECONDS else 1


if __name__ == "__main__":
    raise SystemExit(main())
