"""Starting the box from outside: its namespaces, its deadline, its result, and a snapshot
of the machine's own files that the box must leave as they were."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BOX_DEADLINE = 100.0  # the whole run, start to teardown; a healthy one takes ~10-20 s

# The machine's paths the box mounts over or creates inside its namespaces.
WATCHED_TREES = ("/etc/mail",)
WATCHED_PATHS = (
    "/etc/hosts", "/etc/aliases", "/etc/aliases.db", "/etc/opendkim", "/etc/opendkim.conf",
    "/etc/supervisord.conf", "/var/lib/reconfigure", "/var/log/supervisord.log",
    "/run/sendmail-ready", "/run/sendmail.pid", "/run/opendkim/opendkim.pid",
    "/usr/local/bin/reconfigure", "/usr/local/bin/supervisord",
    "/usr/local/bin/sendmail-wrapper",
)


def usable() -> str | None:
    """Why the box cannot run here, or None."""
    if os.geteuid() != 0:
        return "the box mounts and unshares namespaces: it needs root"
    for tool in ("unshare", "m4", "makemap", "miltertest", "opendkim", "opendkim-genkey", "ip"):
        if shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
            return f"{tool} is not installed (make deps)"
    return None


def _entry(path: Path) -> tuple[object, ...]:
    st = path.lstat()
    digest = ""
    if path.is_file() and not path.is_symlink():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, digest


def host_snapshot() -> dict[str, object]:
    """Owner, mode, size, mtime and content hash of every watched file; None = absent."""
    snapshot: dict[str, object] = {"hostname": socket.gethostname()}
    for tree in WATCHED_TREES:
        root = Path(tree)
        for path in sorted([root, *root.rglob("*")]) if root.exists() else []:
            snapshot[str(path)] = _entry(path)
    for name in WATCHED_PATHS:
        path = Path(name)
        snapshot[name] = _entry(path) if path.exists() or path.is_symlink() else None
    return snapshot


@dataclass
class BoxRun:
    result: dict[str, Any]
    returncode: int
    output: str  # the box's own stdout and stderr
    seconds: float

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [c for c in self.result.get("checks", []) if not c["ok"]]

    def report(self, workdir: Path) -> str:
        """What went wrong, with the daemons' own words, for an assertion message."""
        lines = [f"box {self.result.get('tier')} exited {self.returncode} "
                 f"after {self.seconds:.1f} s"]
        lines += [f"FAILED {c['name']}: {c['detail']}" for c in self.failed]
        if self.result.get("error"):
            lines.append(f"error: {self.result['error']}")
        for name, path in (("box output", None), ("programs' stdout", "supervisord.out"),
                           ("supervisord.log", "overlay/var/upper/log/supervisord.log")):
            text = self.output if path is None else _read(workdir / path)
            lines.append(f"--- {name} (tail) ---\n" + "\n".join(text.splitlines()[-40:]))
        return "\n".join(lines)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return "(none)"


def run_box(tier: str, workdir: Path, timeout: float = BOX_DEADLINE) -> BoxRun:
    """One box, in fresh namespaces that die with it (--kill-child; pid 1 of the pid
    namespace is the box, so its end kills every process it left)."""
    argv = ["unshare", "--uts", "--mount", "--net", "--pid", "--fork", "--mount-proc",
            "--kill-child", "--", sys.executable, "-m", "tests.e2e.box", tier, str(workdir)]
    started = time.monotonic()
    try:
        done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True,
                              timeout=timeout, check=False)
        returncode, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as expired:  # run() has killed unshare: all gone
        returncode = -9
        output = f"killed after {timeout:g} s\n" + _text(expired.stdout) + _text(expired.stderr)
    seconds = time.monotonic() - started
    result_file = workdir / "result.json"
    result: dict[str, Any] = (json.loads(result_file.read_text()) if result_file.exists()
                              else {"tier": tier, "checks": [], "timings": {},
                                    "error": "no result.json written"})
    return BoxRun(result, returncode, output, seconds)


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode(errors="replace")
