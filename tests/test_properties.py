"""Property tests: structure of every rendered line, skipped rows, order independence."""

from __future__ import annotations

import random
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from reconfigure.rows import Skipped, validate
from reconfigure.tiers import IMAP_UNKNOWN, TIERS
from tests.support.items import RELAY, Item, render

LABELS = st.sampled_from(["example", "Example", "EXAMPLE", "a", "x-1", "mail", "com", "org",
                          "\u017f", "\u212a", "-bad", "", "b\nc", "sinkhole", "test"])
NAMES = st.lists(LABELS, min_size=1, max_size=3).map(".".join)
HOSTILE = st.sampled_from(["\t", "\n", "\x00", "\x1b", "\x7f", "\u00a0", "\u2028", "#", " ",
                           "/", "..", ".", "\u017f", "To:", "\r"])
USERNAMES = st.one_of(
    st.text(min_size=0, max_size=70),
    st.lists(st.one_of(st.sampled_from(["bob", "Bob", "a.b", "x+y", "ü"]), HOSTILE),
             min_size=1, max_size=4).map("".join),
)
ACCOUNTS = st.one_of(st.sampled_from(["alice", "bob", "carol", "a.b", "_x", "Zed"]), HOSTILE)
USERS = st.lists(ACCOUNTS, min_size=1, max_size=3).map("/".join)


@st.composite
def rows(draw: st.DrawFn) -> Item:
    row: Item = {
        "address": {"S": draw(st.text(max_size=10))},
        "tld": {"S": draw(NAMES)},
        "username": {"S": draw(USERNAMES)},
        "user": {"S": draw(USERS)},
    }
    sub = draw(st.one_of(st.none(), st.just(""), NAMES))
    if sub is not None:
        row["subdomain"] = {"S": sub}
    for name in draw(st.lists(st.sampled_from(["tld", "username", "user"]), max_size=1)):
        row[name] = draw(st.sampled_from([{"N": "1"}, {"NULL": True}, None]))
    return row


TOKEN = r"[^\s\x00-\x1f\x7f-\x9f]+"
KEY = rf"(?:To:)?{TOKEN}"
VERBS = "|".join(re.escape(v) for v in ("OK", IMAP_UNKNOWN, "RELAY", "REJECT"))
LINE = {
    "domains.j2": re.compile(TOKEN),
    "virtusertable.j2": re.compile(rf"{TOKEN}@{TOKEN}\t{TOKEN}"),
    "access.j2": re.compile(rf"To:{TOKEN}\t(?:{VERBS})"),
    "mailertable.j2": re.compile(
        rf"\.?{TOKEN}\tsmtp:\[{re.escape(RELAY)}\]"
        r"|sinkhole\.test\tsmtp:\[sinkhole\.cabal\.internal\]:25"),
    "aliases.j2": re.compile(r"[A-Za-z0-9_.-]+: [A-Za-z0-9_.-]+(?:, [A-Za-z0-9_.-]+)+"),
    "dkim_keytable.j2": re.compile(
        r"cabal\._domainkey\.(\S+) (\S+):cabal:/etc/opendkim/keys/cabal"),
    "dkim_signingtable.j2": re.compile(r"\*@(\S+) cabal\._domainkey\.(\S+)"),
    "dkim_trustedhosts.j2": re.compile(r"127\.0\.0\.1|::1|localhost"),
}


def body_lines(data: bytes) -> list[str]:
    lines = data.decode().split("\n")
    assert lines[-1] == "", "every file ends with one newline"
    return lines[:-1]


@settings(max_examples=300, deadline=None)
@given(st.lists(rows(), max_size=12), st.sampled_from(sorted(TIERS)), st.booleans())
def test_every_line_has_its_file_structure(items: list[Item], tier: str, sink: bool) -> None:
    files = render(items, tier, sinkhole=sink).files
    for artifact in TIERS[tier].artifacts:
        lines = body_lines(files[artifact.path])
        if lines == [""] or (lines[:1] == [""] and lines[1:2] == [lines[-1]] and sink):
            lines = lines[1:]  # the empty file (and the sinkhole after it)
        pattern = LINE[artifact.template]
        for line in lines:
            match = pattern.fullmatch(line)
            assert match, (artifact.path, line)
            if artifact.template.startswith("dkim_") and match.groups():
                assert match.group(1) == match.group(2)


@settings(max_examples=300, deadline=None)
@given(st.lists(rows(), max_size=12), st.sampled_from(sorted(TIERS)))
def test_skipped_rows_contribute_nothing(items: list[Item], tier: str) -> None:
    valid = [row for row in items if not isinstance(validate(row), Skipped)]
    assert render(items, tier).files == render(valid, tier).files


def row_key(row: Item) -> tuple[object, ...]:
    sub = row.get("subdomain")
    return (repr(row["tld"]), repr(sub if sub != {"S": ""} else None), repr(row["username"]))


@settings(max_examples=300, deadline=None)
@given(st.lists(rows(), max_size=12, unique_by=row_key), st.randoms(use_true_random=False),
       st.sampled_from(sorted(TIERS)))
def test_rendering_ignores_the_order_of_non_colliding_rows(
        items: list[Item], rnd: random.Random, tier: str) -> None:
    shuffled = list(items)
    rnd.shuffle(shuffled)
    first, second = render(items, tier), render(shuffled, tier)
    assert first.files == second.files
    assert sorted(map(repr, first.dropped)) == sorted(map(repr, second.dropped))
