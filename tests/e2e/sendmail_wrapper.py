"""The box's sendmail wrapper, doing what the tier images' wrapper does under supervisord.

Wait for the startup prep's ready file, kill any sendmail left from an earlier run, remove
the stale pid file, then exec the daemon in the foreground by its full path (sendmail
re-execs itself from argv[0] on SIGHUP, so a relative name would break the reload).

The box installs this file as /usr/local/bin/sendmail-wrapper inside its namespaces. Killing
"every sendmail" is only safe there: it refuses to run unless pid 1 is the box.
"""

from __future__ import annotations

import grp
import os
import signal
import sys
import time
from pathlib import Path

READY = Path("/run/sendmail-ready")
PID_FILE = Path("/var/run/sendmail.pid")
QUEUE = Path("/var/spool/mqueue")
SENDMAIL = "/usr/sbin/sendmail"
BOX_MARK = b"tests.e2e.box"
GONE_WITHIN = 10.0  # seconds for an old sendmail to exit on TERM before it gets KILL


def in_the_box() -> bool:
    """True only in the box's private pid namespace, where pid 1 is the box itself."""
    try:
        return BOX_MARK in Path("/proc/1/cmdline").read_bytes()
    except OSError:
        return False


def sendmails() -> list[int]:
    """Processes named sendmail (comm survives sendmail's process-title rewrites)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if comm == "sendmail":
            found.append(int(entry.name))
    return found


def kill_old_sendmails() -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in sendmails():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                continue
        deadline = time.monotonic() + GONE_WITHIN
        while sendmails() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not sendmails():
            return


def main() -> int:
    if not in_the_box():
        print("sendmail-wrapper: not inside the box's pid namespace; refusing to run",
              file=sys.stderr)
        return 1
    if not READY.exists():
        print(f"sendmail-wrapper: waiting for {READY}", flush=True)
        while not READY.exists():
            time.sleep(0.1)
    kill_old_sendmails()
    PID_FILE.unlink(missing_ok=True)
    os.chown(QUEUE, 0, grp.getgrnam("mail").gr_gid)  # root:mail 0700, as the images
    # re-assert before every start
    QUEUE.chmod(0o700)
    sys.stdout.flush()
    os.execv(SENDMAIL, [SENDMAIL, "-bD", "-q15m"])


if __name__ == "__main__":
    sys.exit(main())
