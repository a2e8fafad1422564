"""Benchmark the daemon against a moto server process on loopback.

    .venv/bin/python bench/daemon.py latency [ROWS] [TRIALS]   message → new .db latency
    .venv/bin/python bench/daemon.py cycle [ROWS ...]           one cycle's time, split
    .venv/bin/python bench/daemon.py idle [--minutes N] [--interval S]  idle CPU-s/h, SQS req/h
    .venv/bin/python bench/daemon.py fanout [ROWS] [TRIALS]     publish → all 3 tasks updated

Every figure separates the time spent in AWS calls (moto's own Scan is slow and not ours
to optimise) from the daemon's own time, and reports the daemon's CPU and peak RSS.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.render import synthetic_items
from tests.support.items import item
from tests.support.proxy import counting_proxy
from tests.support.world import (
    AwsWorld,
    cycles,
    daemon_env,
    dump_map,
    make_root,
    make_world,
    start_daemon,
    stop_daemon,
    wait_for,
)
from tests.support.world import moto_server as world_moto

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SETTLE = 10.0  # idle: seconds after the startup cycle before the window opens


@contextmanager
def moto_server() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                "-p", str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _listening(port), timeout=30, what="moto server")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait()


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def seed(world: AwsWorld, count: int) -> None:
    dynamodb = world.client("dynamodb")
    items = synthetic_items(count)
    for start in range(0, len(items), 25):
        batch = [{"PutRequest": {"Item": i}} for i in items[start:start + 25]]
        dynamodb.batch_write_item(RequestItems={world.table: batch})


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextmanager
def daemon(rows: int, **env: str) -> Iterator[tuple[AwsWorld, Path, subprocess.Popen[bytes],
                                                    Path]]:
    with moto_server() as endpoint, tempfile.TemporaryDirectory() as tmp:
        world = make_world(endpoint)
        seeded = time.perf_counter()
        seed(world, rows)
        print(f"# seeded {rows} rows in {time.perf_counter() - seeded:.1f} s", flush=True)
        root = make_root(Path(tmp) / "root")
        log = Path(tmp) / "daemon.log"
        process = start_daemon(daemon_env(world, root, **env), log)
        try:
            wait_for(lambda: cycles(log), timeout=1800, what="startup cycle")
            yield world, root, process, log
        finally:
            stop_daemon(process)


def latency(rows: int, trials: int) -> None:
    with daemon(rows) as (world, root, _, _log):
        db = root / "etc/mail/virtusertable.db"
        cf = root / "sendmail.cf"

        def until_compiled(key: str) -> None:
            wait_for(lambda: key in dump_map(db, cf), timeout=60, what="new .db")

        figures = []
        for trial in range(trials):
            key = f"bench{trial}@sub1.domain01.example"
            world.put(item(f"bench{trial}", "domain01.example", "alice", "sub1"))
            started = time.perf_counter()
            world.notify()
            until_compiled(key)
            figures.append(time.perf_counter() - started)
            wait_for(lambda: world.queue_depth() == 0, what="message deleted")
        print(f"latency rows={rows} trials={trials}: p50={statistics.median(figures):.3f} s "
              f"p95={_percentile(figures, 0.95):.3f} s max={max(figures):.3f} s")


def cycle(rows: int) -> None:
    with daemon(rows) as (world, _root, process, log):
        world.put(item("bench", "domain01.example", "alice", "sub1"))
        world.notify()
        wait_for(lambda: len(cycles(log)) >= 2, timeout=1800, what="message cycle")
        for event in cycles(log):
            own = event["duration_ms"] - event["aws_ms"]
            print(f"cycle rows={rows} trigger={event['trigger']:<8} "
                  f"total={event['duration_ms']} ms aws={event['aws_ms']} ms "
                  f"own={own} ms cpu={event['cpu_ms']} ms "
                  f"changed={len(event['changed'])}")
        print(f"peak RSS rows={rows}: {peak_rss_mb(process.pid):.0f} MB")


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and of its children it has waited for (makemap, …)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / CLOCK_TICKS


class CpuMeter:
    """CPU seconds of a process tree. /proc's figures come in clock ticks (10 ms: a
    10-minute idle window holds only ~10 of them), so where a cgroup-v1 cpuacct hierarchy
    is writable (root) the process is moved into a cgroup of its own, whose usage counts
    nanoseconds of every thread and child, dead or alive; else /proc."""

    ROOT = Path("/sys/fs/cgroup/cpuacct")

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.group: Path | None = self.ROOT / f"reconfigure-bench-{pid}"
        try:
            self.group.mkdir()
            (self.group / "cgroup.procs").write_text(str(pid))
        except OSError:
            self.group = None
        self.how = "cgroup cpuacct (ns)" if self.group else "/proc clock ticks"

    def seconds(self) -> float:
        if self.group is None:
            return tree_cpu(self.pid)
        return int((self.group / "cpuacct.usage").read_text()) / 1e9

    def close(self) -> None:
        if self.group is not None:
            for pid in (self.group / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    (self.ROOT / "cgroup.procs").write_text(pid)
            with contextlib.suppress(OSError):
                self.group.rmdir()


def idle(minutes: float, rows: int = 1000, interval: float = 900) -> None:
    """An idle daemon with the default interval, a `rows`-row table and an empty queue,
    behind a counting proxy: CPU-seconds and SQS requests per hour (issue 12's targets:
    <= 0.5 CPU-s/h including fallback cycles, <= 200 requests/h)."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request lines
    with world_moto() as endpoint, counting_proxy(endpoint) as proxy, \
            tempfile.TemporaryDirectory() as tmp:
        world = make_world(endpoint)
        seed(world, rows)
        root = make_root(Path(tmp) / "root")
        log = Path(tmp) / "daemon.log"
        env = daemon_env(world, root, AWS_ENDPOINT_URL=proxy.url)
        if interval != 900:
            env["RECONFIGURE_INTERVAL"] = f"{interval:g}"
        process = start_daemon(env, log)
        meter = CpuMeter(process.pid)
        try:
            wait_for(lambda: cycles(log), timeout=300, what="startup cycle")
            timers_or_message: list[dict[str, Any]] = []
            time.sleep(SETTLE)  # the steady state: what follows the startup cycle is done
            before, started = meter.seconds(), time.monotonic()
            proxy.reset()
            time.sleep(minutes * 60)
            used, elapsed = meter.seconds() - before, time.monotonic() - started
            sqs, every, receives = proxy.total("AmazonSQS"), proxy.total(), len(proxy.waits())
            short = sum(1 for w in proxy.waits() if w < 20)
            timers = [c for c in cycles(log) if c["trigger"] == "timer"]
            if not timers:  # a no-change cycle's cost: what a timer cycle does
                world.notify()
                timers_or_message = wait_for(lambda: [c for c in cycles(log)
                                                      if c["trigger"] == "message"],
                                             timeout=120, what="message cycle")
        finally:
            stop_daemon(process)
            meter.close()
    per_hour = 3600 / elapsed
    # A timer cycle's own cost (no change to apply) when the window had one, else that of
    # a message cycle run after the window (the same work: read, render, plan, no change).
    costs = sorted(c["cpu_ms"] / 1000 for c in timers or timers_or_message)
    cycle_cpu = costs[len(costs) // 2]
    which = "timer, median" if timers else "no-change message cycle after the window"
    fallback = 3600 / 900 * cycle_cpu  # the default interval's cycles
    between = (used - sum(c["cpu_ms"] / 1000 for c in timers)) * per_hour
    print(f"idle rows={rows} window={elapsed / 60:.1f} min, interval {interval:g} s "
          f"({len(timers)} timer cycles in the window); CPU from {meter.how}")
    print(f"  daemon+children CPU: {used:.3f} s in the window = {used * per_hour:.3f} CPU-s/h;"
          f" between cycles {between:.3f} CPU-s/h; one cycle ({rows} rows, {which}) "
          f"{cycle_cpu:.3f} CPU-s; idle with the default interval's 4 cycles an hour: "
          f"{between + fallback:.3f} CPU-s/h")
    print(f"  SQS requests: {sqs} = {sqs * per_hour:.0f}/h ({receives} ReceiveMessage, "
          f"{short} with WaitTimeSeconds < 20); all AWS requests: {every} = "
          f"{every * per_hour:.0f}/h")


def _percentile(figures: list[float], share: float) -> float:
    ordered = sorted(figures)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _first_cycle(log: Path) -> None:
    wait_for(lambda: cycles(log), timeout=120, what="startup cycle")


def _everywhere(key: str, maps: list[Path]) -> None:
    wait_for(lambda: all(key in p.read_text() for p in maps), timeout=60, what=key)


def fanout(rows: int, trials: int, window: float = 5.0) -> None:
    """Three private-queue daemons and three sharing one queue, fed by one topic."""
    with moto_server() as endpoint, tempfile.TemporaryDirectory() as tmp:
        world = make_world(endpoint)
        seed(world, rows)
        sns, sqs = world.client("sns"), world.client("sqs")
        topic = sns.create_topic(Name="cabal-address-changed")["TopicArn"]
        shared_arn = sqs.get_queue_attributes(QueueUrl=world.queue_url, AttributeNames=[
            "QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=shared_arn)
        processes: list[subprocess.Popen[bytes]] = []
        roots: dict[str, list[Path]] = {"private": [], "shared": []}
        logs: list[Path] = []
        for mode in ("private", "shared"):
            for n in range(3):
                root = make_root(Path(tmp) / f"{mode}{n}")
                env = daemon_env(world, root)
                if mode == "private":
                    env["RECONFIGURE_SNS_TOPIC_ARN"] = topic
                    del env["SQS_QUEUE_URL"]
                log = Path(tmp) / f"{mode}{n}.log"
                processes.append(start_daemon(env, log))
                logs.append(log)
                _first_cycle(log)
                roots[mode].append(root / "etc/mail/virtusertable")
        try:
            private, shared_counts = [], []
            for trial in range(trials):
                key = f"fan{trial}@sub1.domain01.example"
                world.put(item(f"fan{trial}", "domain01.example", "alice", "sub1"))
                started = time.perf_counter()
                sns.publish(TopicArn=topic, Message=json.dumps(
                    {"event": "address_changed", "timestamp": "2026-11-29T12:00:00Z"}))
                _everywhere(key, roots["private"])
                private.append(time.perf_counter() - started)
                time.sleep(max(0.0, window - (time.perf_counter() - started)))
                shared_counts.append(sum(key in p.read_text() for p in roots["shared"]))
            print(f"fanout rows={rows} trials={trials}: private queues, all three updated: "
                  f"p50={statistics.median(private):.3f} s p95={_percentile(private, 0.95):.3f} s"
                  f"; shared queue, daemons updated within {window:g} s: "
                  f"{shared_counts} (of 3 each trial)")
            done = [c for log in logs[:3] for c in cycles(log) if c["trigger"] == "message"]
            print("private daemons' message cycles: median total "
                  f"{statistics.median(c['duration_ms'] for c in done):.0f} ms, of which AWS "
                  f"{statistics.median(c['aws_ms'] for c in done):.0f} ms; own "
                  f"{statistics.median(c['duration_ms'] - c['aws_ms'] for c in done):.0f} ms")
        finally:
            for process in processes:
                stop_daemon(process)


def main(argv: list[str]) -> None:
    command, args = (argv[0], argv[1:]) if argv else ("latency", [])
    if command == "latency":
        latency(int(args[0]) if args else 1000, int(args[1]) if len(args) > 1 else 10)
    elif command == "cycle":
        for rows in [int(a) for a in args] or [10_000]:
            cycle(rows)
    elif command == "fanout":
        fanout(int(args[0]) if args else 1000, int(args[1]) if len(args) > 1 else 10)
    elif command == "idle":
        options = dict(zip(args[::2], args[1::2], strict=False))
        idle(float(options.get("--minutes", 10)),
             interval=float(options.get("--interval", 900)))
    else:
        raise SystemExit(__doc__)
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
