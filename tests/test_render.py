"""Exact bytes of every generated file (docs/design.md §4)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconfigure import render as render_module
from reconfigure.tiers import IMAP_UNKNOWN, TIERS
from tests.support.items import RELAY, item, render, text, worked_example

T = IMAP_UNKNOWN
DOMAINS = "example.com\nacme.example.com\nexample.org\nzz.example.org\n"
KEYTABLE = (
    "cabal._domainkey.acme.example.com acme.example.com:cabal:/etc/opendkim/keys/cabal\n"
    "cabal._domainkey.zz.example.org zz.example.org:cabal:/etc/opendkim/keys/cabal\n"
)
SIGNING = (
    "*@acme.example.com cabal._domainkey.acme.example.com\n"
    "*@zz.example.org cabal._domainkey.zz.example.org\n"
)
VIRTUSER = (
    "news@acme.example.com\talice\n"
    "shop@acme.example.com\talice_carol\n"
    "postmaster@example.org\talice\n"
    "bank@zz.example.org\tbob\n"
)
MAILERTABLE = (
    f".example.com\tsmtp:[{RELAY}]\nexample.com\tsmtp:[{RELAY}]\n"
    f".example.org\tsmtp:[{RELAY}]\nexample.org\tsmtp:[{RELAY}]\n"
)


def access(known: str, unknown: str) -> str:
    return (
        f"To:news@acme.example.com\t{known}\n"
        f"To:shop@acme.example.com\t{known}\n"
        f"To:acme.example.com\t{unknown}\n"
        f"To:example.com\t{unknown}\n"
        f"To:postmaster@example.org\t{known}\n"
        f"To:bank@zz.example.org\t{known}\n"
        f"To:zz.example.org\t{unknown}\n"
        f"To:example.org\t{unknown}\n"
    )


GOLDEN = {
    "imap": {
        "/etc/mail/local-host-names": DOMAINS,
        "/etc/mail/relay-domains": DOMAINS,
        "/etc/mail/access": access("OK", T),
        "/etc/mail/virtusertable": VIRTUSER,
        "/etc/aliases.dynamic": "alice_carol: alice, carol\n",
    },
    "smtp-in": {
        "/etc/mail/masq-domains": DOMAINS,
        "/etc/mail/access": access("RELAY", "REJECT"),
        "/etc/mail/relay-domains": DOMAINS,
        "/etc/mail/mailertable": MAILERTABLE,
        "/etc/mail/virtusertable": VIRTUSER,
    },
    "smtp-out": {
        "/etc/mail/masq-domains": DOMAINS,
        "/etc/mail/mailertable": MAILERTABLE,
        "/etc/opendkim/KeyTable": KEYTABLE,
        "/etc/opendkim/SigningTable": SIGNING,
        "/etc/opendkim/TrustedHosts": "127.0.0.1\n::1\nlocalhost\n",
    },
}


@pytest.mark.parametrize("tier", sorted(GOLDEN))
def test_worked_example_exact_bytes(tier: str) -> None:
    files = render(worked_example(), tier).files
    assert {p: b.decode() for p, b in files.items()} == GOLDEN[tier]


def test_imap_access_uses_a_temporary_error_not_tempfail() -> None:
    out = text(worked_example(), "imap", "/etc/mail/access")
    assert "TEMPFAIL" not in out
    assert "To:example.com\tERROR:4.2.0:450 Mailbox not yet provisioned, try again later\n" in out


@pytest.mark.parametrize("tier", sorted(TIERS))
def test_empty_table_gives_single_newline_files(tier: str) -> None:
    files = render([], tier).files
    for path, data in files.items():
        expected = b"127.0.0.1\n::1\nlocalhost\n" if path.endswith("TrustedHosts") else b"\n"
        assert data == expected, path


def test_files_without_lines_are_a_single_newline_even_with_other_rows() -> None:
    rows = [item("a", "example.com", "alice")]  # tld-level only: no subdomain, no alias
    assert text(rows, "imap", "/etc/aliases.dynamic") == "\n"
    assert text(rows, "smtp-out", "/etc/opendkim/KeyTable") == "\n"
    assert text(rows, "smtp-out", "/etc/opendkim/SigningTable") == "\n"


SINK = "sinkhole.test\tsmtp:[sinkhole.cabal.internal]:25\n"


def test_sinkhole_appended_on_smtp_out_only() -> None:
    out = text(worked_example(), "smtp-out", "/etc/mail/mailertable", sinkhole=True)
    assert out == MAILERTABLE + SINK
    assert text(worked_example(), "smtp-in", "/etc/mail/mailertable", sinkhole=True) == MAILERTABLE


def test_sinkhole_with_no_tlds_follows_an_empty_line() -> None:
    assert text([], "smtp-out", "/etc/mail/mailertable", sinkhole=True) == "\n" + SINK


def test_sorting_is_code_point_order() -> None:
    rows = [
        item("b", "example.com", "x", "sub"),
        item("a", "example.com", "x", "sub"),
        item("Z", "example.com", "x", "sub"),
        item("q", "example.com", "x", "Zed"),
        item("q", "Example.com", "x"),
    ]
    assert text(rows, "imap", "/etc/mail/virtusertable") == (
        "q@Example.com\tx\n"
        "q@Zed.example.com\tx\n"
        "Z@sub.example.com\tx\n"
        "a@sub.example.com\tx\n"
        "b@sub.example.com\tx\n"
    )


def test_later_row_wins_on_same_key() -> None:
    rows = [item("a", "example.com", "alice", "s"), item("a", "example.com", "bob", "s")]
    assert text(rows, "imap", "/etc/mail/virtusertable") == "a@s.example.com\tbob\n"


def test_aliases_one_line_per_distinct_target_sorted() -> None:
    rows = [
        item("x", "example.com", "dave/bob", "s"),
        item("y", "example.org", "bob/dave", "t"),
        item("z", "example.org", "alice/carol/bob", "t"),
        item("w", "example.org", "erin", "t"),
    ]
    assert text(rows, "imap", "/etc/aliases.dynamic") == (
        "alice_bob_carol: alice, bob, carol\nbob_dave: bob, dave\n"
    )


@pytest.mark.parametrize("reverse", [False, True])
def test_two_account_lists_joined_to_one_alias_give_one_line(reverse: bool) -> None:
    """`a_b`+`c` and `a`+`b_c` both join to `a_b_c`: one alias line, whichever row is
    first, with the code-point-first list (virtusertable sends both addresses to it)."""
    rows = [item("x", "example.com", "a_b/c", "s"), item("y", "example.com", "b_c/a", "t")]
    assert text(rows[::-1] if reverse else rows, "imap", "/etc/aliases.dynamic") == (
        "a_b_c: a, b_c\n")


def created(when: str) -> dict[str, str]:
    return {"S": when}


def test_case_variants_without_request_time_keep_the_code_point_first() -> None:
    rows = [item("bob", "example.com", "alice", "x"), item("Bob", "example.com", "carol", "x")]
    result = render(rows, "imap")
    assert result.files["/etc/mail/virtusertable"] == b"Bob@x.example.com\tcarol\n"
    assert result.files["/etc/mail/access"].decode().count("@x.example.com") == 1
    assert {(d.path, d.line, d.kept) for d in result.dropped} == {
        ("/etc/mail/virtusertable", "bob@x.example.com\talice", "Bob@x.example.com\tcarol"),
        ("/etc/mail/access", "To:bob@x.example.com\tOK", "To:Bob@x.example.com\tOK"),
    }


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("tier", ["imap", "smtp-in"])
def test_a_later_case_variant_cannot_take_an_address_over(reverse: bool, tier: str) -> None:
    rows = [item("admin", "example.com", "alice", "s1",
                 RequestTime=created("2024-03-01T10:00:00.000000")),
            item("ADMIN", "example.com", "mallory", "s1",
                 RequestTime=created("2025-01-01T00:00:00.000000"))]
    result = render(rows[::-1] if reverse else rows, tier)
    files = {p: b.decode() for p, b in result.files.items()}
    assert files["/etc/mail/virtusertable"] == "admin@s1.example.com\talice\n"
    known = "OK" if tier == "imap" else "RELAY"
    assert f"To:admin@s1.example.com\t{known}\n" in files["/etc/mail/access"]
    assert "ADMIN" not in files["/etc/mail/access"]
    assert [(d.path, d.line, d.kept) for d in result.dropped] == [
        ("/etc/mail/access", f"To:ADMIN@s1.example.com\t{known}",
         f"To:admin@s1.example.com\t{known}"),
        ("/etc/mail/virtusertable", "ADMIN@s1.example.com\tmallory",
         "admin@s1.example.com\talice"),
    ]


def test_a_row_without_request_time_is_the_oldest() -> None:
    rows = [item("Admin", "example.com", "mallory", "s1",
                 RequestTime=created("2000-01-01T00:00:00")),
            item("admin", "example.com", "alice", "s1")]
    assert text(rows, "imap", "/etc/mail/virtusertable") == "admin@s1.example.com\talice\n"


def test_a_request_time_that_is_not_a_string_counts_as_none() -> None:
    rows = [item("Admin", "example.com", "mallory", "s1",
                 RequestTime=created("2000-01-01T00:00:00")),
            item("admin", "example.com", "alice", "s1", RequestTime={"N": "1700000000"})]
    assert text(rows, "imap", "/etc/mail/virtusertable") == "admin@s1.example.com\talice\n"


def test_equal_request_times_go_to_the_code_point_first_line() -> None:
    when = created("2024-01-01T00:00:00")
    rows = [item("bob", "example.com", "alice", "x", RequestTime=when),
            item("Bob", "example.com", "carol", "x", RequestTime=when)]
    assert text(rows, "imap", "/etc/mail/virtusertable") == "Bob@x.example.com\tcarol\n"


def test_case_variants_across_domains_written_differently() -> None:
    """`sub.Example.com` and `Sub.example.com` are one domain for makemap."""
    rows = [item("a", "Example.com", "new", "sub", RequestTime=created("2025")),
            item("A", "example.com", "old", "Sub", RequestTime=created("2024"))]
    result = render(rows, "imap")
    files = {p: b.decode() for p, b in result.files.items()}
    assert files["/etc/mail/virtusertable"] == "A@Sub.example.com\told\n"
    # The domain lines keep the first in file order.
    assert files["/etc/mail/access"] == (
        f"To:sub.Example.com\t{T}\nTo:Example.com\t{T}\nTo:A@Sub.example.com\tOK\n"
    )
    assert ("/etc/mail/access", f"To:Sub.example.com\t{T}", f"To:sub.Example.com\t{T}") in {
        (d.path, d.line, d.kept) for d in result.dropped}


def test_name_both_tld_and_subdomain() -> None:
    rows = [item("a", "mail.example.com", "alice", RequestTime=created("2025")),
            item("a", "example.com", "bob", "mail", RequestTime=created("2024"))]
    result = render(rows, "imap")
    files = {p: b.decode() for p, b in result.files.items()}
    assert files["/etc/mail/virtusertable"] == "a@mail.example.com\tbob\n"
    assert files["/etc/mail/access"] == (
        "To:a@mail.example.com\tOK\nTo:mail.example.com\t" + T + "\nTo:example.com\t" + T + "\n"
    )
    # class files are not de-duplicated
    assert files["/etc/mail/local-host-names"] == (
        "example.com\nmail.example.com\nmail.example.com\n"
    )
    rows[0]["RequestTime"] = created("2023")
    assert text(rows, "imap", "/etc/mail/virtusertable") == "a@mail.example.com\talice\n"


def test_mailertable_case_duplicates_and_sinkhole_collision() -> None:
    rows = [item("a", "example.com", "x", RequestTime=created("2024")),
            item("a", "Example.com", "x", RequestTime=created("2025")),
            item("a", "sinkhole.test", "x")]
    out = text(rows, "smtp-out", "/etc/mail/mailertable", sinkhole=True)
    # Domain keys: the first line in file order stays, whatever the rows' ages.
    assert out == (
        f".Example.com\tsmtp:[{RELAY}]\nExample.com\tsmtp:[{RELAY}]\n"
        f".sinkhole.test\tsmtp:[{RELAY}]\nsinkhole.test\tsmtp:[{RELAY}]\n"
    )


def test_class_files_and_dkim_tables_keep_case_duplicates() -> None:
    rows = [item("a", "example.com", "x", "Sub"), item("a", "example.com", "x", "sub")]
    assert text(rows, "smtp-out", "/etc/opendkim/SigningTable").count("\n") == 2
    assert text(rows, "smtp-out", "/etc/mail/masq-domains").count("\n") == 3


MAP_TEXTS = st.lists(st.text(alphabet="aZ\u00df\u0130\t \n\x0b\x1c\u00a0\u2028\u00ad@:",
                             max_size=8), max_size=6).map("".join)


TAB_LINES = st.lists(
    st.tuples(st.text(alphabet="aZ\u00df@:\u00ad \x0b\u00a0\u2028", max_size=4),
              st.text(alphabet="aZ \t\u00a0", max_size=4)),
    max_size=5).map(lambda pairs: "".join(f"{key}\t{value}\n" for key, value in pairs))


@settings(max_examples=500, deadline=None)
@given(MAP_TEXTS | TAB_LINES)
def test_the_keys_of_a_text_are_those_of_its_lines(text: str) -> None:
    """Whichever way a map's keys are found (string methods for key<TAB>value lines,
    else a regular expression), they are map_keys of its lines, or None (line by line)."""
    keys = render_module._text_keys(text)
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    assert keys is None or keys == render_module.map_keys(lines)
    if text and text.endswith("\n") and all(
            "\t" in line and line.split("\t", 1)[0].isprintable()
            and " " not in line.split("\t", 1)[0] and line[:1] != "\t" and
            line.count("\t") == 1 for line in lines):
        assert render_module._tab_keys(text.lower() if text.isascii()
                                       else text.encode().lower().decode()) == keys


@settings(max_examples=300, deadline=None)
@given(MAP_TEXTS | TAB_LINES, st.integers(1, 30))
def test_the_string_method_keys_agree_with_the_expression(text: str, block: int) -> None:
    """_tab_keys gives the keys the regular expression finds, or declines, however the
    text is cut into blocks of lines."""
    lowered = text.encode().lower().decode()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(render_module, "_BLOCK", block)
        keys = render_module._tab_keys(lowered)
    if keys is not None:
        assert keys == render_module._KEY.findall(lowered)[:-1]
