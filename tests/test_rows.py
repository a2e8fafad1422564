"""Every rule of docs/design.md §3, with hostile values in every field."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconfigure.rows import (
    _FORBIDDEN_IN_USERNAME,
    ATTRIBUTES,
    Address,
    Skipped,
    validate,
)
from tests.support.items import item, render
from tests.support.makemap import makemap


def skipped_rule(row: dict[str, object]) -> str:
    result = validate(row)
    assert isinstance(result, Skipped), result
    return result.rule


def test_valid_row() -> None:
    row = item("Bob.Smith+tag", "Example.COM", "carol/alice", "acme")
    assert validate(row) == Address("Example.COM", "acme", "Bob.Smith+tag", ("alice", "carol"))


def test_request_time_is_carried_and_optional() -> None:
    row = item("u", "example.com", "alice", RequestTime={"S": "2024-05-01T12:00:00.000000"})
    assert validate(row) == Address("example.com", "", "u", ("alice",),
                                    "2024-05-01T12:00:00.000000")
    assert validate(item("u", "example.com", "alice")) == Address(
        "example.com", "", "u", ("alice",), "")


@pytest.mark.parametrize("value", [{"N": "1"}, {"NULL": True}, "plain", None, {"S": 5}])
def test_a_request_time_of_another_type_keeps_the_row_as_the_oldest(value: object) -> None:
    result = validate(item("u", "example.com", "alice", RequestTime=value))
    assert isinstance(result, Address) and result.created == ""


def test_the_scan_projects_every_attribute_the_validator_reads() -> None:
    """A spy item records what validate reads; the projection must hold all of it."""
    read: set[str] = set()

    class Spy(dict[str, object]):
        def get(self, key: str, default: object = None) -> object:
            read.add(key)
            return super().get(key, default)

        def __getitem__(self, key: str) -> object:
            read.add(key)
            return super().__getitem__(key)

        def __contains__(self, key: object) -> bool:
            read.add(str(key))
            return super().__contains__(key)

    validate(Spy(item("u", "example.com", "alice", "s", RequestTime={"S": "2024"})))
    validate(Spy(item("a b", "example.com", "alice", "s")))
    assert read <= set(ATTRIBUTES)
    assert set(ATTRIBUTES) == {"address", "tld", "subdomain", "username", "user", "RequestTime"}


def test_non_ascii_username_is_kept_unchanged() -> None:
    assert validate(item("jürgen", "example.com", "x")) == Address(
        "example.com", "", "jürgen", ("x",))


@pytest.mark.parametrize("tld", [
    "com", "example.com.", ".example.com", "example..com", "-bad.com", "bad-.com",
    "exa mple.com", "example.com\n", "example.com\nTo:evil\tRELAY", "ex\tample.com",
    "\u017ftuff.com", "\u212aelvin.com", "exam_ple.com", "a" * 64 + ".com",
    ".".join(["a" * 63] * 4) + ".com", "", "example.com\x00", "例え.jp",
])
def test_bad_tld(tld: str) -> None:
    assert skipped_rule(item("u", tld, "alice")).startswith("tld:")


def test_longest_valid_tld_is_accepted() -> None:
    tld = ".".join(["a" * 63] * 3 + ["b" * 61])  # 253 characters
    assert len(tld) == 253
    assert isinstance(validate(item("u", tld, "alice")), Address)


@pytest.mark.parametrize("sub", [
    "-x", "x-", "a..b", ".a", "a.", "a b", "a\nb", "\u017f", "\u212a", "a_b", "a" * 64, "a/b",
])
def test_bad_subdomain(sub: str) -> None:
    assert skipped_rule(item("u", "example.com", "alice", sub)).startswith("subdomain:")


def test_multi_label_subdomain_and_empty_subdomain() -> None:
    assert validate(item("u", "example.com", "alice", "a.b")) == Address(
        "example.com", "a.b", "u", ("alice",))
    assert validate(item("u", "example.com", "alice", "")) == Address(
        "example.com", "", "u", ("alice",))


@pytest.mark.parametrize("username", [
    "", "a" * 65, "a b", "a\tb", "a\nb", "x\nTo:evil@example.com\tRELAY", "a\x00b", "a\x1bb",
    "a\x7fb", "a\u00a0b", "a\u2028b", "a\x85b", "#comment", "\u3000x", " lead",
])
def test_bad_username(username: str) -> None:
    assert skipped_rule(item(username, "example.com", "alice")).startswith("username:")


def test_username_of_64_characters_is_valid() -> None:
    assert isinstance(validate(item("a" * 64, "example.com", "alice")), Address)


@pytest.mark.parametrize(("user", "sub"), [
    ("", "s"), ("alice/", "s"), ("/alice", "s"), ("alice//bob", "s"), ("..", "s"),
    (".", "s"), ("../etc", "s"), ("-rf", "s"), ("a b", "s"), ("a\nb", "s"), ("a" * 33, "s"),
    ("alice/bob", None), ("alice/bob", ""), (".hidden", None), ("ali\tce", None),
    ("alice\n", None), ("\u212a", None),
])
def test_bad_user(user: str, sub: str | None) -> None:
    assert skipped_rule(item("u", "example.com", user, sub)).startswith("user:")


def test_user_with_32_characters_and_dots_is_valid() -> None:
    assert isinstance(validate(item("u", "example.com", "a" * 32)), Address)
    assert isinstance(validate(item("u", "example.com", "a.b-c_d", "s")), Address)


def test_too_many_accounts_for_one_map_line() -> None:
    user = "/".join(f"user{i:04d}" for i in range(200))
    assert "1023 bytes" in skipped_rule(item("u", "example.com", user, "s"))


def test_sub_tld_of_253_characters_is_the_longest() -> None:
    tld = "example.com"
    longest = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * (253 - 3 * 64 - 1 - len(tld))])
    assert len(f"{longest}.{tld}") == 253
    assert isinstance(validate(item("u", tld, "alice", longest)), Address)
    assert skipped_rule(item("u", tld, "alice", longest + "e")) == (
        "subdomain: sub.tld longer than 253 characters")


def virtusertable_row(line_bytes: int) -> dict[str, object]:
    """A row whose virtusertable line is `line_bytes` long without its newline."""
    username = "\U0001f600" * 64  # 256 bytes in UTF-8
    head = f"{username}@s.example.com\t"
    size = line_bytes - len(head.encode())
    accounts: list[str] = []
    while size > 32:
        accounts.append(f"u{len(accounts):030d}")
        size -= 32
    user = "/".join([*accounts, "v" * size])
    assert len(head.encode()) + len(user) == line_bytes
    return item(username, "example.com", user, "s")


# Two makemap runs, each with its own deadline.
@pytest.mark.timeout(150)
def test_virtusertable_line_of_1022_bytes_plus_newline_is_the_longest(tmp_path: Path) -> None:
    """makemap's real limit: a line and its newline within 1023 bytes."""
    longest = virtusertable_row(1022)
    assert isinstance(validate(longest), Address)
    assert "1023 bytes" in skipped_rule(virtusertable_row(1023))
    data = render([longest], "imap").files["/etc/mail/virtusertable"]
    assert len(data) == 1023
    done = makemap(tmp_path, "v", data)
    assert done.returncode == 0, done.stderr
    done = makemap(tmp_path, "w", data[:-1] + b"x\n")
    assert done.returncode == 65 and b"line too long" in done.stderr


@pytest.mark.parametrize("name", ["tld", "subdomain", "username", "user"])
@pytest.mark.parametrize("value", [
    {"N": "1"}, {"L": []}, {"NULL": True}, {"SS": ["a"]}, "plain", None, {"S": 5},
    {"S": "example.com", "N": "1"},
])
def test_wrong_dynamodb_type(name: str, value: object) -> None:
    row = item("u", "example.com", "alice", "sub")
    row[name] = value
    assert skipped_rule(row) == f"{name}: not a DynamoDB string (S) attribute"


@pytest.mark.parametrize("name", ["tld", "username", "user"])
def test_missing_attribute(name: str) -> None:
    row = item("u", "example.com", "alice")
    del row[name]
    assert skipped_rule(row) == f"{name}: missing"


def test_skip_names_the_address_key() -> None:
    result = validate(item("a b", "example.com", "alice"))
    assert isinstance(result, Skipped)
    assert result.address == "a b@example.com"
    row = item("a b", "example.com", "alice")
    del row["address"]
    result = validate(row)
    assert isinstance(result, Skipped) and result.address == "<no address>"


def test_skipped_rows_leave_no_text_and_the_rest_renders() -> None:
    evil = item("x\nTo:evil.example\tRELAY", "example.com", "alice", "s")
    files = render([evil, item("ok", "example.org", "bob")], "smtp-in").files
    for data in files.values():
        assert b"evil" not in data and b"example.com" not in data
    assert files["/etc/mail/virtusertable"] == b"ok@example.org\tbob\n"


@given(st.characters())
def test_forbidden_class_matches_the_definition(char: str) -> None:
    expected = char.isspace() or unicodedata.category(char) == "Cc"
    assert bool(_FORBIDDEN_IN_USERNAME.search(char)) is expected


def test_forbidden_class_matches_the_definition_for_every_code_point() -> None:
    for code in range(0x110000):
        char = chr(code)
        expected = char.isspace() or unicodedata.category(char) == "Cc"
        assert bool(_FORBIDDEN_IN_USERNAME.search(char)) is expected, hex(code)


