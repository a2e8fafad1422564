"""Timings of the tier in a box: publish → RCPT accepted (smtp-in), publish → signed
(smtp-out), sendmail's HUP reload, start-up and stop, over several fresh boxes.

    sudo .venv/bin/python bench/box.py [RUNS] [TIER ...]      (default: 5 runs, both tiers)

Each run is a whole box (tests/e2e/box.py) in fresh namespaces; a run with a failed check
is reported and left out of the figures.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.launch import run_box, usable


def main(argv: list[str]) -> int:
    why = usable()
    if why is not None:
        print(f"bench/box.py: {why}", file=sys.stderr)
        return 2
    runs = int(argv[0]) if argv else 5
    tiers = argv[1:] or ["smtp-in", "smtp-out"]
    for tier in tiers:
        samples: dict[str, list[float]] = {}
        whole: list[float] = []
        for number in range(1, runs + 1):
            workdir = Path(tempfile.mkdtemp(prefix="box-bench-"))
            try:
                run = run_box(tier, workdir)
                if run.failed or run.result["error"] or run.returncode:
                    print(f"{tier} run {number}: FAILED\n{run.report(workdir)}")
                    continue
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            whole.append(run.seconds)
            for name, seconds in run.result["timings"].items():
                samples.setdefault(name, []).append(seconds)
        print(f"\n{tier}: {len(whole)} of {runs} runs passed; whole run median "
              f"{statistics.median(whole) if whole else float('nan'):.1f} s")
        print(f"  {'timing':<48} {'median':>8} {'max':>8}")
        for name, values in samples.items():
            print(f"  {name:<48} {statistics.median(values):>7.3f}s {max(values):>7.3f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
