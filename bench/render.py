"""Benchmark `reconfigure render`: wall, CPU and peak RSS per tier at 10k/100k/1M rows,
the start-up (interpreter + the render path's imports) alone, and the daemon's own share
of a cycle (tree + render, in one process with the garbage collector on, as `run` has it).

    .venv/bin/python bench/render.py [N ...]
    .venv/bin/python bench/render.py --against DIR [--runs K] [N ...]
    .venv/bin/python bench/render.py --old-generator FILE [--runs K] [N ...]

Each figure is the median of three runs (CPU is user + system of the child process), with
the package's bytecode compiled first, as a wheel install has it.
`--against DIR` compares with another checkout instead (DIR holds its `reconfigure`
package, put first on PYTHONPATH): runs of the two alternate, K of each (default 11),
medians, and the outputs must be byte-identical. The machine is shared: only
alternating runs say which is cheaper. `--old-generator FILE` alternates with the
generator this project replaces, FILE being upstream's docker/shared/generate-config.sh
(cabalmail/cabal-infra; run as it is, never copied here): `share` is this checkout's
median CPU as a fraction of it.

Rows are synthetic but shaped like the real table: ~20 tlds, N/10 subdomains, 5% of rows
shared by several accounts, and the attributes the table holds (address, tld, subdomain,
username, user, comment, RequestTime).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
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


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def median3(argv: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    runs = sorted((measure(argv, env) for _ in range(3)), key=lambda run: run[1])
    return runs[1]


# The imports of `reconfigure render --scan-file` (cli.py imports the rest as it goes).
RENDER_IMPORTS = ("import reconfigure.entry, reconfigure.cli, reconfigure.render, "
                  "reconfigure.tree, reconfigure.scanfile, reconfigure.files")


def cycle_share(count: int, tier: str) -> tuple[float, float]:
    """CPU seconds of TreeBuilder over 4000-row pages (the table's attributes only, as
    the scan projects them) and of render_tier, with the garbage collector on."""
    from reconfigure.render import RenderOptions, render_tier  # noqa: PLC0415
    from reconfigure.rows import ATTRIBUTES  # noqa: PLC0415
    from reconfigure.tiers import TIERS  # noqa: PLC0415
    from reconfigure.tree import TreeBuilder, count_addresses  # noqa: PLC0415

    items = [{k: v for k, v in row.items() if k in ATTRIBUTES}
             for row in synthetic_items(count)]
    # Pages arrive decoded afresh (boto3 builds them), not as one long-lived list.
    pages = [json.dumps(items[i:i + 4000]) for i in range(0, count, 4000)]
    del items
    tree_cpu = 0.0
    builder = TreeBuilder()
    for text in pages:
        page = json.loads(text)
        start = time.process_time()
        builder.add(page)
        tree_cpu += time.process_time() - start
    start = time.process_time()
    render_tier(TIERS[tier], builder.tree, RenderOptions("imap.internal"))
    count_addresses(builder.tree)
    return tree_cpu, time.process_time() - start


def measure(argv: list[str], env: dict[str, str],
            cwd: str | None = None) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user+sys) and peak RSS in MB of one child process."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, cwd=cwd)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv} failed with status {status}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def installed_env(*checkouts: Path) -> dict[str, str]:
    """The environment of a render as installed from the wheel, whose modules pip has
    compiled: each checkout's package is compiled first, and the children may keep
    bytecode (an environment with PYTHONDONTWRITEBYTECODE would have every run compile
    the package from source, ~40 ms of CPU that no installed copy pays)."""
    for checkout in checkouts:
        subprocess.run([sys.executable, "-m", "compileall", "-q",
                        str(checkout / "reconfigure")], check=True)
    env = {name: value for name, value in os.environ.items()
           if name != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "CERT_DOMAIN": "cabal.example", "IMAP_INTERNAL_HOST": "imap.internal"}


THIS = Path(__file__).resolve().parent.parent


def console() -> list[str]:
    """What an operator runs: the console script beside this interpreter (it imports
    `reconfigure` from PYTHONPATH first), else `python -m reconfigure`, which costs runpy
    on top."""
    script = Path(sys.executable).with_name("reconfigure")
    return [str(script)] if script.exists() else [sys.executable, "-m", "reconfigure"]


def main(argv: list[str]) -> None:
    sizes = [int(a) for a in argv] or [10_000, 100_000, 1_000_000]
    env = installed_env(THIS)
    exe = console()
    bare = median3([sys.executable, "-c", "pass"], env)
    imports = median3([sys.executable, "-c", RENDER_IMPORTS], env)
    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty.json"
        empty.write_text('{"Items": []}')
        start = median3([*exe, "render", "--tier", "imap", "--scan-file", str(empty),
                         "--root", str(Path(tmp) / "empty")], env)
        print(f"start-up: interpreter {bare[1]:.3f} s CPU; + the render modules' imports"
              f" {imports[1]:.3f} s; `render` of an empty scan file {start[1]:.3f} s,"
              f" {start[2]:.0f} MB")
        print(f"{'rows':>9} {'tier':>9} {'wall s':>8} {'cpu s':>8} {'peak MB':>8}"
              f" {'cycle: tree s':>14} {'render s':>9}")
        for count in sizes:
            scan = Path(tmp) / f"scan-{count}.json"
            # In a child: a forked process's peak RSS counts its parent's memory too.
            subprocess.run([sys.executable, __file__, "--write", str(count), str(scan)],
                           check=True)
            for tier in TIERS:
                out = Path(tmp) / f"out-{count}-{tier}"
                wall, cpu, rss = median3([*exe, "render", "--tier", tier, "--scan-file",
                                          str(scan), "--root", str(out)], env)
                cycle = subprocess.run(
                    [sys.executable, __file__, "--cycle", str(count), tier], env=env,
                    check=True, capture_output=True, text=True).stdout.split()
                print(f"{count:>9} {tier:>9} {wall:>8.2f} {cpu:>8.2f} {rss:>8.0f}"
                      f" {float(cycle[0]):>14.2f} {float(cycle[1]):>9.2f}", flush=True)


# argv and environment of one contender's render of `scan` for `tier` into `out`
Contender = Callable[[Path, str, Path], tuple[list[str], dict[str, str]]]


def checkout(directory: Path, base: dict[str, str]) -> Contender:
    """`reconfigure render` from a checkout (its directory first on PYTHONPATH; each run in
    a scratch directory, where `python -m` would look first)."""
    env = {**base, "PYTHONPATH": str(directory.resolve())}

    def command(scan: Path, tier: str, out: Path) -> tuple[list[str], dict[str, str]]:
        return [*console(), "render", "--tier", tier,
                "--scan-file", str(scan), "--root", str(out)], env
    return command


def old_generator(script: Path, base: dict[str, str], scratch: Path) -> Contender:
    """The old generator: the Python program inside upstream's generate-config.sh (read
    from the operator's copy, run as it is), after its `aws dynamodb scan`. It writes
    under /etc, so it runs in its own mount namespace with a copy of /etc bound there
    (root and util-linux's unshare needed); its output is that copy's files."""
    lines = script.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.rstrip().endswith("<<'PYEOF'"))
    end = lines.index("PYEOF", start)
    program = scratch / "old-generator.py"
    program.write_text("\n".join(lines[start + 1:end]) + "\n")

    def command(scan: Path, tier: str, out: Path) -> tuple[list[str], dict[str, str]]:
        shutil.copytree("/etc", out / "etc", symlinks=True)
        return ["unshare", "--mount", "--", "/bin/sh", "-c",
                'mount --bind "$1" /etc && shift && exec "$@"', "sh", str(out / "etc"),
                sys.executable, str(program), tier, base["IMAP_INTERNAL_HOST"], str(scan)], base
    return command


def alternate(contenders: dict[str, Contender], runs: int, sizes: list[int],
              *, same_output: bool) -> None:
    """Runs of the contenders alternate (the machine is shared: only alternating runs
    say which is cheaper), K of each; medians, minimums, and the first's median as a
    share of each other's. `same_output`: the outputs must be byte-identical."""
    print(f"{'rows':>9} {'tier':>9} {'checkout':>9} {'cpu s':>8} {'min s':>7}"
          f" {'peak MB':>8} {'share':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for count in sizes:
            scan = Path(tmp) / f"scan-{count}.json"
            subprocess.run([sys.executable, __file__, "--write", str(count), str(scan)],
                           check=True)
            for tier in TIERS:
                figures: dict[str, list[tuple[float, float, float]]] = {
                    name: [] for name in contenders}
                for run in range(runs):
                    for name in list(contenders)[::1 if run % 2 else -1]:
                        out = Path(tmp) / f"{name}-{count}-{tier}-{run}"
                        out.mkdir()
                        argv, env = contenders[name](scan, tier, out)
                        figures[name].append(measure(argv, env, cwd=tmp))
                        if run < runs - 1:
                            shutil.rmtree(out)
                medians = {name: median([run[1] for run in runs_of])
                           for name, runs_of in figures.items()}
                first = next(iter(medians.values()))
                for name, runs_of in figures.items():
                    print(f"{count:>9} {tier:>9} {name:>9} {medians[name]:>8.2f}"
                          f" {min(run[1] for run in runs_of):>7.2f}"
                          f" {median([run[2] for run in runs_of]):>8.0f}"
                          f" {first / medians[name]:>6.2f}", flush=True)
                if same_output:
                    outs = [str(Path(tmp) / f"{name}-{count}-{tier}-{runs - 1}")
                            for name in contenders]
                    same = subprocess.run(["diff", "-r", *outs], capture_output=True,
                                          check=False).returncode == 0
                    print(f"{'':>9} {tier:>9} outputs {'identical' if same else 'DIFFER'}")


def options(words: list[str]) -> tuple[int, list[int]]:
    runs = 11
    if words[:1] == ["--runs"]:
        runs, words = int(words[1]), words[2:]
    return runs, [int(word) for word in words] or [100_000]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--against"]:
        base = installed_env(THIS, Path(sys.argv[2]))
        alternate({"this": checkout(THIS, base), "other": checkout(Path(sys.argv[2]), base)},
                  *options(sys.argv[3:]), same_output=True)
    elif sys.argv[1:2] == ["--old-generator"]:
        with tempfile.TemporaryDirectory() as scratch:
            base = installed_env(THIS)
            alternate({"this": checkout(THIS, base),
                       "old": old_generator(Path(sys.argv[2]), base, Path(scratch))},
                      *options(sys.argv[3:]), same_output=False)
    elif sys.argv[1:2] == ["--write"]:
        write_scan(Path(sys.argv[3]), int(sys.argv[2]))
    elif sys.argv[1:2] == ["--cycle"]:
        print(*cycle_share(int(sys.argv[2]), sys.argv[3]))
    else:
        main(sys.argv[1:])
