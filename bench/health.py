"""CPU per `reconfigure health` call (the container HEALTHCHECK runs it every minute).

    .venv/bin/python bench/health.py [RUNS]      (default 20)

Runs the installed console script against a fresh status file and prints the mean and
worst CPU seconds (user + system, from the children's rusage) per call; target <= 30 ms.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(runs: int) -> int:
    script = Path(sys.executable).with_name("reconfigure")
    with tempfile.TemporaryDirectory() as root:
        status = Path(root) / "var/lib/reconfigure/status.json"
        status.parent.mkdir(parents=True)
        status.write_text(json.dumps({"last_success_at": time.time(),
                                      "last_cycle": {"ok": True}}))
        env = {**os.environ, "RECONFIGURE_ROOT": root}
        costs = []
        for _ in range(runs):
            before = children_cpu()
            subprocess.run([str(script), "health"], env=env, check=True,
                           stdout=subprocess.DEVNULL)
            costs.append(children_cpu() - before)
    print(f"health: {runs} calls, CPU mean {1000 * sum(costs) / runs:.1f} ms, "
          f"worst {1000 * max(costs):.1f} ms (target <= 30 ms); "
          f"{sum(costs) / runs * 60:.2f} CPU-s per hour at one call a minute")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20))
