"""A throw-away root for the real useradd/groupadd (`--prefix`): never the machine's own
account files."""

from __future__ import annotations

import os
from pathlib import Path

PASSWD = """\
root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
mail:x:8:8:mail:/var/mail:/usr/sbin/nologin
svc:x:500:500:a service:/home/svc:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
"""
GROUP = """\
root:x:0:
daemon:x:1:
mail:x:8:
svc:x:500:
nogroup:x:65534:
"""
PROCMAILRC = b"MAILDIR=$HOME/Maildir/\nDEFAULT=$MAILDIR\n"
HOST_FILES = ("/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow")

USERADD = "/usr/sbin/useradd"
GROUPADD = "/usr/sbin/groupadd"


def make_account_root(path: Path, *, passwd: str = PASSWD, group: str = GROUP) -> Path:
    """A root that useradd/groupadd --prefix can work in: the account files, login.defs
    with the id range raised as the tier images do, a skeleton, /home and procmailrc."""
    etc = path / "etc"
    for directory in (etc / "default", etc / "skel", path / "home"):
        directory.mkdir(parents=True)
    (etc / "passwd").write_text(passwd)
    (etc / "group").write_text(group)
    names = [line.split(":", 1)[0] for line in passwd.splitlines()]
    groups = [line.split(":", 1)[0] for line in group.splitlines()]
    (etc / "shadow").write_text("".join(f"{n}:*:19000:0:99999:7:::\n" for n in names))
    (etc / "gshadow").write_text("".join(f"{n}:*::\n" for n in groups))
    (etc / "shadow").chmod(0o640)
    (etc / "gshadow").chmod(0o640)
    (etc / "login.defs").write_text(
        "UID_MIN 1000\nUID_MAX 2147483646\nGID_MIN 1000\nGID_MAX 2147483646\n"
        "SYS_UID_MIN 100\nSYS_UID_MAX 999\nSYS_GID_MIN 100\nSYS_GID_MAX 999\n"
        "UMASK 022\nHOME_MODE 0755\nUSERGROUPS_ENAB yes\nENCRYPT_METHOD SHA512\n")
    (etc / "default/useradd").write_text("SHELL=/bin/sh\n")
    (etc / "skel/.profile").write_text("# from the image's skeleton\n")
    (etc / "procmailrc").write_bytes(PROCMAILRC)
    return path


def real_tools_available() -> bool:
    return os.geteuid() == 0 and os.access(USERADD, os.X_OK) and os.access(GROUPADD, os.X_OK)
