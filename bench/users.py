"""Benchmark user sync (docs/design.md §8) with the real groupadd/useradd in a throw-away root.

    sudo .venv/bin/python bench/users.py [N]      (default N = 1000; needs root)

Prints, for N users: creating them all (wall; CPU of this process and of the useradd /
groupadd children), then reconciling them when all exist (CPU of read passwd/group + plan +
per-home checks; Cognito reads excluded). The target for the second is <= 100 ms at N=1000.
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reconfigure import commands, log
from reconfigure.users.accounts import read_account_db
from reconfigure.users.plan import CognitoUser, plan_users
from reconfigure.users.sync import sync_users
from tests.support.accounts import GROUPADD, USERADD, make_account_root

TARGET_MS = 100.0
ROUNDS = 7


class Counter:
    """commands.run that counts spawns (a reconcile must make none)."""

    def __init__(self) -> None:
        self.spawns = 0

    def __call__(self, argv: Sequence[str], *, timeout: float, stdin: Path | None = None,
                 stop: threading.Event | None = None) -> str:
        self.spawns += 1
        return commands.run(argv, timeout=timeout, stdin=stdin, stop=stop)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(count: int) -> int:
    if os.geteuid() != 0:
        print("needs root (useradd/groupadd and chown)", file=sys.stderr)
        return 2
    log.configure(open(os.devnull, "w"), json=True)  # noqa: SIM115 - lives as long as the run
    users = [CognitoUser(f"user{i:05d}", str(100000 + i)) for i in range(count)]
    with tempfile.TemporaryDirectory(prefix="bench-users-") as temp:
        root = make_account_root(Path(temp) / "root")

        def sync(run: Counter) -> Any:
            return sync_users(users, root=root, useradd=(USERADD,), groupadd=(GROUPADD,),
                              timeout=60, procmailrc=root / "etc/procmailrc", run=run)

        counter = Counter()
        wall, cpu, child = time.perf_counter(), time.process_time(), children_cpu()
        result = sync(counter)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        child = children_cpu() - child
        assert len(result.created) == count and not result.errors and not result.refused
        print(f"create {count} users: wall {wall:.2f} s, CPU {cpu + child:.2f} s "
              f"(this process {cpu:.2f} s, {counter.spawns} children {child:.2f} s), "
              f"{wall / count * 1000:.1f} ms/user")

        rounds: list[float] = []
        for _ in range(ROUNDS):
            counter = Counter()
            cpu = time.process_time()
            result = sync(counter)
            rounds.append((time.process_time() - cpu) * 1000)
            assert counter.spawns == 0 and not result.created and not result.refused
            assert not result.errors
        cpu = time.process_time()
        for _ in range(ROUNDS):
            plan_users(users, read_account_db(root))
        read_and_plan = (time.process_time() - cpu) * 1000 / ROUNDS
        median = statistics.median(rounds)
        print(f"reconcile {count} existing users (read DB + plan + ensure dirs), CPU over "
              f"{ROUNDS} rounds: median {median:.1f} ms, min {min(rounds):.1f} ms, "
              f"max {max(rounds):.1f} ms; of which read DB + plan {read_and_plan:.1f} ms; "
              f"0 processes spawned; target <= {TARGET_MS:.0f} ms at N=1000: "
              f"{'met' if median <= TARGET_MS * count / 1000 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000))
