"""The one table of what each tier generates: path, template, compilation, reload.

Adding a generated file means adding a template and one `Artifact` line here; the
renderer, the planner and the reloader derive everything else from these entries.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


class Reload(enum.Enum):
    """What a change to a file requires of the running daemons."""

    SENDMAIL_RESTART = "sendmail"  # class files are read only at sendmail's start
    OPENDKIM_RELOAD = "opendkim"  # SIGUSR1: re-read KeyTable/SigningTable
    NEWALIASES = "newaliases"  # reassemble /etc/aliases and rebuild aliases.db


@dataclass(frozen=True, slots=True)
class Artifact:
    path: str  # absolute path in the container
    template: str
    hash_map: bool = False  # compiled with `makemap hash` into <path>.db; keys must be unique
    reload: Reload | None = None
    params: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    artifacts: tuple[Artifact, ...]
    sync_users: bool


# imap's /etc/aliases is assembled: the image's static part, a header, the dynamic aliases.
ALIASES = "/etc/aliases"
ALIASES_STATIC = "/etc/aliases.static"

IMAP_UNKNOWN = "ERROR:4.2.0:450 Mailbox not yet provisioned, try again later"

TIERS: Mapping[str, Tier] = MappingProxyType({
    "imap": Tier("imap", (
        Artifact("/etc/mail/local-host-names", "domains.j2", reload=Reload.SENDMAIL_RESTART),
        Artifact("/etc/mail/relay-domains", "domains.j2", reload=Reload.SENDMAIL_RESTART),
        Artifact("/etc/mail/access", "access.j2", hash_map=True,
                 params={"known": "OK", "unknown": IMAP_UNKNOWN}),
        Artifact("/etc/mail/virtusertable", "virtusertable.j2", hash_map=True),
        Artifact("/etc/aliases.dynamic", "aliases.j2", reload=Reload.NEWALIASES),
    ), sync_users=True),
    "smtp-in": Tier("smtp-in", (
        Artifact("/etc/mail/masq-domains", "domains.j2", reload=Reload.SENDMAIL_RESTART),
        Artifact("/etc/mail/access", "access.j2", hash_map=True,
                 params={"known": "RELAY", "unknown": "REJECT"}),
        Artifact("/etc/mail/relay-domains", "domains.j2", reload=Reload.SENDMAIL_RESTART),
        Artifact("/etc/mail/mailertable", "mailertable.j2", hash_map=True),
        Artifact("/etc/mail/virtusertable", "virtusertable.j2", hash_map=True),
    ), sync_users=False),
    "smtp-out": Tier("smtp-out", (
        Artifact("/etc/mail/masq-domains", "domains.j2", reload=Reload.SENDMAIL_RESTART),
        Artifact("/etc/mail/mailertable", "mailertable.j2", hash_map=True,
                 params={"sinkhole_route": True}),
        Artifact("/etc/opendkim/KeyTable", "dkim_keytable.j2", reload=Reload.OPENDKIM_RELOAD),
        Artifact("/etc/opendkim/SigningTable", "dkim_signingtable.j2",
                 reload=Reload.OPENDKIM_RELOAD),
        Artifact("/etc/opendkim/TrustedHosts", "dkim_trustedhosts.j2"),
    ), sync_users=True),
})
