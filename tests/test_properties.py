"""Property tests: structure of every rendered line, skipped rows, order independence."""

from __future__ import annotations

import random
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from reconfigure.render import RenderOptions, render_tier
from reconfigure.rows import (
    MAX_MAP_LINE_BYTES,
    Skipped,
    StringRows,
    longest_address_line,
    validate,
)
from reconfigure.tiers import IMAP_UNKNOWN, TIERS
from reconfigure.tree import Tree, TreeBuilder, address_losers
from tests.support.items import RELAY, Item, render
from tests.support.makemap import makemap_errors

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
    created = draw(st.one_of(st.none(), st.sampled_from(["", "2024-01-01T00:00:00", "2025"]),
                             st.just({"N": "1"})))
    if created is not None:
        row["RequestTime"] = created if isinstance(created, dict) else {"S": created}
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


# ----- makemap must accept every rendered map, whatever the rows

LONG_HOST = ".".join(["h" * 63] * 3 + ["i" * 61])  # 253 characters: the longest relay host


def label_of(size: int) -> str:
    return "l" * size


def name_of_length(size: int) -> str:
    """A valid dotted name of exactly `size` characters, of labels up to 63 long."""
    labels = []
    while size > 63:
        take = min(63, size - 2)  # room for the dot and a label after it
        labels.append("a" * take)
        size -= take + 1
    labels.append("b" * size)
    return ".".join(labels)


ANY_LABEL = st.one_of(
    st.sampled_from(["a", "example", "Example", "x-1", "com"]),
    st.integers(1, 63).map(label_of),
    st.text(alphabet="aB0-", min_size=1, max_size=64),
)
# Lengths at and around the limits (63 per label, 253 per name, ~1000 per map line).
SIZES = st.one_of(st.sampled_from([1, 62, 63, 64, 127, 200, 240, 241, 250, 251, 252, 253, 254]),
                  st.integers(1, 300), st.integers(900, 1030))
LONG_NAMES = st.one_of(
    st.lists(ANY_LABEL, min_size=1, max_size=18).map(".".join),
    SIZES.map(name_of_length),
)
LONG_USERNAMES = st.one_of(
    st.text(min_size=1, max_size=64),
    st.text(alphabet=st.characters(min_codepoint=0x10000, max_codepoint=0x1FFFF),
            min_size=1, max_size=64),
    st.integers(1, 64).map(lambda n: "\U0001f600" * n),
    st.sampled_from(["bob", "Bob", "BOB", "ü", "a.b+c"]),
)
ACCOUNT_NAMES = st.one_of(st.sampled_from(["alice", "bob", "carol", "Zed", "_x"]),
                          st.integers(1, 32).map(lambda n: "u" * n),
                          st.text(alphabet="abcxyz09_.-", min_size=1, max_size=32))
MANY_ACCOUNTS = st.lists(ACCOUNT_NAMES, min_size=1, max_size=40).map("/".join)


def accounts_of_length(size: int) -> str:
    """A `/`-separated list of valid accounts, `size` characters long (at least 1)."""
    accounts = []
    while size > 32:
        take = min(32, size - 2)
        accounts.append("u" * take)
        size -= take + 1
    accounts.append("v" * max(size, 1))
    return "/".join(accounts)


@st.composite
def long_rows(draw: st.DrawFn) -> Item:
    """Free-form rows, and rows whose longest line lands within a few bytes of the limit."""
    tld = draw(st.one_of(st.sampled_from(["example.com", "Example.COM", "sinkhole.test"]),
                         st.integers(3, 253).map(lambda n: name_of_length(n - 2) + ".x"),
                         LONG_NAMES))
    kind = draw(st.sampled_from(["free", "long domain", "long target"]))
    username = draw(LONG_USERNAMES)
    if kind == "long domain":  # `To:sub.tld<TAB>ERROR:4.2.0:450 ...` near the limit
        sub: str | None = name_of_length(max(1, draw(st.integers(940, 1000)) - len(tld) - 1))
        user = draw(ACCOUNT_NAMES)
    elif kind == "long target":  # `user@sub.tld<TAB>a_b_c...` near the limit
        sub = draw(st.sampled_from(["a", "mail", "x.y"]))
        line = draw(st.integers(1000, 1030))
        user = accounts_of_length(line - len(f"{username}@{sub}.{tld}\t".encode()))
    else:
        sub = draw(st.one_of(st.none(), st.just(""), st.sampled_from(["a", "mail"]),
                             LONG_NAMES))
        user = draw(MANY_ACCOUNTS) if sub else draw(ACCOUNT_NAMES)
    row: Item = {
        "address": {"S": "generated"},
        "tld": {"S": tld},
        "username": {"S": username},
        "user": {"S": user},
    }
    if sub is not None:
        row["subdomain"] = {"S": sub}
    return row


@pytest.mark.timeout(180)  # some 400 makemap runs; a process start can wait on the disk
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.data_too_large])
@given(st.lists(long_rows(), min_size=1, max_size=6), st.sampled_from([RELAY, LONG_HOST]),
       st.booleans())
def test_makemap_accepts_every_rendered_map(items: list[Item], relay: str, sink: bool) -> None:
    builder = TreeBuilder()
    builder.add(items)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        for tier in TIERS.values():
            files = render_tier(tier, builder.tree, RenderOptions(relay, sink)).files
            for index, artifact in enumerate(tier.artifacts):
                if artifact.hash_map:
                    errors = makemap_errors(directory, f"{tier.name}-{index}",
                                            files[artifact.path])
                    assert not errors, (tier.name, artifact.path, errors)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(long_rows())
def test_the_line_bound_is_the_longest_rendered_address_line(row: Item) -> None:
    """The validator's arithmetic mirrors the templates: it equals what they render."""
    address = validate(row)
    if isinstance(address, Skipped):
        return
    builder = TreeBuilder()
    builder.add([row])
    longest = 0
    for tier in TIERS.values():
        files = render_tier(tier, builder.tree, RenderOptions(LONG_HOST, True)).files
        for artifact in tier.artifacts:
            if artifact.hash_map:
                lines = [line for line in files[artifact.path].split(b"\n") if b"@" in line]
                longest = max([longest, *map(len, lines)])
    domain = f"{address.subdomain}.{address.tld}" if address.subdomain else address.tld
    bound = longest_address_line(address.username, len(domain),
                                 len("_".join(address.accounts)))
    assert longest == bound < MAX_MAP_LINE_BYTES


CASED_USERNAMES = st.one_of(
    st.sampled_from(["a", "A", "ab", "aB", "\u03a3", "\u03c3", "\u0130", "i\u0307", "k",
                     "K", "\u212a"]),
    st.lists(st.sampled_from(["a", "A", "\u00df", "\u03a3", "\u03c2", "\u0130", "i"]),
             min_size=1, max_size=3).map("".join))


@st.composite
def cased_rows(draw: st.DrawFn) -> Item:
    row: Item = {"tld": {"S": draw(st.sampled_from(["example.com", "example.com", "Example.com",
                                                    "b.c"]))},
                 "username": {"S": draw(CASED_USERNAMES)},
                 "user": {"S": draw(st.sampled_from(["alice", "bob"]))},
                 "RequestTime": {"S": draw(st.sampled_from(["", "1", "2"]))}}
    sub = draw(st.sampled_from(["", "", "a", "A", "a.b"]))
    if sub:
        row["subdomain"] = {"S": sub}
    return row


def reference_losers(tree: Tree) -> frozenset[tuple[str, str, str]]:
    """Every address but the first of each makemap key (lower-cased domain, ASCII
    lower-cased username), ordered by (RequestTime, user@domain, target), ties by
    the address's place in the tree."""
    keys: dict[tuple[str, bytes], list[tuple[tuple[str, str, str], tuple[str, str, str]]]] = {}
    for tld, node in tree.items():
        domains = [("", node.addresses), *node.subdomains.items()]
        for sub, users in domains:
            domain = f"{sub}.{tld}" if sub else tld
            for username, (value, _, created) in users.items():
                keys.setdefault((domain.lower(), username.encode().lower()), []).append(
                    ((created, f"{username}@{domain}", value), (tld, sub, username)))
    losers: set[tuple[str, str, str]] = set()
    for same in keys.values():
        same.sort()
        losers.update(key for _, key in same[1:])
    return frozenset(losers)


def cased(username: str, created: str, tld: str = "example.com") -> Item:
    return {"tld": {"S": tld}, "username": {"S": username}, "user": {"S": "bob"},
            "RequestTime": {"S": created}}


@settings(max_examples=300, deadline=None)
@given(st.lists(cased_rows(), max_size=12))
@example([cased("a", "2"), cased("A", "1")])
@example([cased("\u03c3", "2"), cased("\u03a3", "1"), cased("x", "", "b.c")])
@example([cased("a", "2"), cased("a", "1", "Example.com")])
def test_case_variant_losers_match_the_reference(items: list[Item]) -> None:
    """Usernames and domains that differ only in case (and characters whose lower case
    is longer, or depends on context) lose their key to the oldest variant, whether or
    not the tree's names are all lower case already."""
    builder = TreeBuilder()
    builder.add(items)
    assert address_losers(builder.tree) == reference_losers(builder.tree)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(rows(), cased_rows()), max_size=20))
@example([cased(name, "") for name in ("a b", "a\tb", "\u00e9\u00a0", "#a", "", "a" * 65,
                                       "\u00e9", "a\x7f")])
def test_the_builder_agrees_with_the_validator(items: list[Item]) -> None:
    """The builder's inline checks make the tree and skips rows.validate gives."""
    builder = TreeBuilder()
    builder.add(items)
    reference = TreeBuilder()
    reference.add_validated(validate(item) for item in items)
    assert builder.tree == reference.tree
    assert builder.skipped == reference.skipped
    assert builder.rows == reference.rows == len(items)


STRING_ROWS = st.lists(st.tuples(
    st.text(max_size=5), NAMES, st.one_of(st.just(""), NAMES), USERNAMES, USERS,
    st.sampled_from(["", "2024-01-01T00:00:00", "2025"])), max_size=20)


@settings(max_examples=300, deadline=None)
@given(STRING_ROWS, st.permutations(["address", "tld", "subdomain", "username", "user",
                                     "RequestTime"]))
@example([("a", "example.com", "", name, "alice", "") for name in (
    "a b", "a\tb", "\u00e9\u00a0", "#a", "", "a" * 65, "\u00e9", "a\x7f", "ok")],
    ["address", "tld", "subdomain", "username", "user", "RequestTime"])
def test_string_rows_build_the_tree_their_items_build(
        rows: list[tuple[str, ...]], names: list[str]) -> None:
    """Rows read as their values (StringRows, attributes in any order) make the tree,
    skips and count that the same items as dicts make, and rows.validate gives."""
    order = [["address", "tld", "subdomain", "username", "user", "RequestTime"].index(name)
             for name in names]
    page = StringRows(tuple(names), [tuple(row[i] for i in order) for row in rows])
    builder = TreeBuilder()
    builder.add(page)
    as_dicts = TreeBuilder()
    as_dicts.add(list(page))
    reference = TreeBuilder()
    reference.add_validated(validate(item) for item in page)
    for other in (as_dicts, reference):
        assert builder.tree == other.tree
        assert builder.skipped == other.skipped
        assert builder.rows == other.rows == len(rows)


# Pages drawn from a few values, so addresses repeat (a later row overwrites) and most
# rows take TreeBuilder's inline path; now and then a bad value, or a row past the line
# limit (a long subdomain with a `user` of many accounts).
def _mostly(good: list[str], *odd: str) -> st.SearchStrategy[str]:
    return st.sampled_from(good * 6 + list(odd))


NINETY_ACCOUNTS = "/".join(f"account{i:03d}" for i in range(90))
PAGE_ROWS = st.lists(st.tuples(
    _mostly(["example.com", "acme.example", "Example.COM"], "bad domain"),
    _mostly(["mail", "shop", "a.b"], "x" * 200, ""),
    _mostly(["alice", "Alice", "bob", "info"], "a" * 64, "a b"),
    _mostly(["alice", "alice/bob", "carol"], "bad user", NINETY_ACCOUNTS),
    st.sampled_from(["", "2024-01-01T00:00:00", "2025"])), min_size=1, max_size=8)


@settings(max_examples=300, deadline=None)
@given(st.lists(PAGE_ROWS, min_size=1, max_size=4))
def test_pages_in_turn_build_the_tree_their_items_build(
        pages: list[list[tuple[str, ...]]]) -> None:
    """Page after page into one builder (verdicts remembered across pages) gives the
    tree, skips and count of rows.validate."""
    names = ("tld", "subdomain", "username", "user", "RequestTime")
    builder = TreeBuilder()
    reference = TreeBuilder()
    for rows in pages:
        builder.add(StringRows(names, list(rows)))
        reference.add_validated(validate(item) for item in StringRows(names, list(rows)))
    assert builder.tree == reference.tree
    assert builder.skipped == reference.skipped
    assert builder.rows == reference.rows


@pytest.mark.parametrize("username", ["a b", "a\nb", "#a", "a\tb", "", "a" * 65, "\u00e9",
                                      "a\x7f", "a\x00", "a#", "a" * 64])
def test_one_odd_username_among_plain_ones(username: str) -> None:
    """A page whose usernames are all plain but one: that one is judged as the
    validator judges it, the others are kept."""
    names = ("address", "tld", "subdomain", "username", "user", "RequestTime")
    rows: list[tuple[str, ...]] = [("x", "example.com", "s", "ok", "alice", ""),
                                   ("y", "example.com", "s", username, "bob", ""),
                                   ("z", "example.com", "", "fine", "carol", "")]
    builder = TreeBuilder()
    builder.add(StringRows(names, rows))
    reference = TreeBuilder()
    reference.add_validated(validate(item) for item in StringRows(names, rows))
    assert builder.tree == reference.tree
    assert builder.skipped == reference.skipped
