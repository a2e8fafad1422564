"""Benchmark `reconfigure render`: wall, CPU and peak RSS per tier at 10k/100k/1M rows.

    .venv/bin/python bench/render.py [N ...]

Rows are synthetic but shaped like the real table: ~20 tlds, N/10 subdomains, 5% of rows
shared by several accounts, and the attributes the table holds (address, tld, subdomain,
username, user, comment, RequestTime).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TIERS = ("imap", "smtp-in", "smtp-out")


def synthetic_items(count: int, seed: int = 1) -> list[dict[str, dict[str, str]]]:
    rnd = random.Random(seed)
    tlds = [f"domain{i:02d}.example" for i in range(20)]
    subdomains = max(1, count // 10)
    items = []
    for i in range(count):
        sub_index = rnd.randrange(subdomains)
        tld = tlds[sub_index % len(tlds)]
        sub = f"sub{sub_index}"
        user = "/".join(rnd.sample(["alice", "bob", "carol", "dave"], 2)) \
            if rnd.random() < 0.05 else f"user{rnd.randrange(500)}"
        username = f"addr{i}"
        items.append({
            "address": {"S": f"{username}@{sub}.{tld}"},
            "tld": {"S": tld},
            "subdomain": {"S": sub},
            "username": {"S": username},
            "user": {"S": user},
            "comment": {"S": f"synthetic row {i}"},
            "RequestTime": {"S": "2026-01-01T00:00:00.000000"},
        })
    return items


def write_scan(path: Path, count: int) -> None:
    items = synthetic_items(count)
    path.write_text(json.dumps({"Items": items, "Count": count, "ScannedCount": count}))


def measure(argv: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user+sys) and peak RSS in MB of one child process."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv} failed with status {status}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main(argv: list[str]) -> None:
    sizes = [int(a) for a in argv] or [10_000, 100_000, 1_000_000]
    env = {**os.environ, "CERT_DOMAIN": "cabal.example", "IMAP_INTERNAL_HOST": "imap.internal"}
    exe = [sys.executable, "-m", "reconfigure"]
    print(f"{'rows':>9} {'tier':>9} {'wall s':>8} {'cpu s':>8} {'peak MB':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for count in sizes:
            scan = Path(tmp) / f"scan-{count}.json"
            # In a child: a forked process's peak RSS counts its parent's memory too.
            subprocess.run([sys.executable, __file__, "--write", str(count), str(scan)],
                           check=True)
            for tier in TIERS:
                out = Path(tmp) / f"out-{count}-{tier}"
                wall, cpu, rss = measure([*exe, "render", "--tier", tier, "--scan-file",
                                          str(scan), "--root", str(out)], env)
                print(f"{count:>9} {tier:>9} {wall:>8.2f} {cpu:>8.2f} {rss:>8.0f}", flush=True)
        baseline = measure([sys.executable, "-c", "import reconfigure.cli"], env)
        print(f"(interpreter + imports alone: {baseline[1]:.2f} s CPU, {baseline[2]:.0f} MB)")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--write"]:
        write_scan(Path(sys.argv[3]), int(sys.argv[2]))
    else:
        main(sys.argv[1:])
