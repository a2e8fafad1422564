"""The streaming scan-file reader agrees with json.loads and names what is wrong."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from reconfigure import scanfile
from reconfigure.rows import ScanFormatError, StringRows
from reconfigure.scanfile import _named, iter_items, load_items

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                max_size=3),
    max_leaves=8,
)


@given(st.lists(st.dictionaries(st.text(max_size=4), JSON, max_size=3), max_size=4),
       st.dictionaries(st.sampled_from(["Count", "ScannedCount", "LastEvaluatedKey"]), JSON),
       st.sampled_from([None, 0, 2]), st.booleans())
def test_agrees_with_json_loads(items: list[dict[str, object]], others: dict[str, object],
                                indent: int | None, items_first: bool) -> None:
    document = {"Items": items, **others} if items_first else {**others, "Items": items}
    text = json.dumps(document, indent=indent)
    assert list(iter_items(text)) == items


@pytest.mark.parametrize(("text", "error", "needle"), [
    ("[]", ScanFormatError, "not a JSON object"),
    ("", json.JSONDecodeError, "Expecting value"),
    ("{not json", json.JSONDecodeError, "Expecting"),
    ("{}", ScanFormatError, '"Items" list'),
    ('{"Count": 1}', ScanFormatError, '"Items" list'),
    ('{"Items": {}}', ScanFormatError, '"Items" list'),
    ('{"Items": [1]}', ScanFormatError, r"Items\[0\] is not an object"),
    ('{"Items": [{}, "x"]}', ScanFormatError, r"Items\[1\] is not an object"),
    ('{"Items": [{}] "Count": 1}', json.JSONDecodeError, "Expecting"),
    ('{"Items": [{},]}', json.JSONDecodeError, "Expecting value"),
    ('{"Items": [{}]} trailing', json.JSONDecodeError, "Extra data"),
    ('{"Items": [{}], }', json.JSONDecodeError, "Expecting"),
    ('{1: []}', json.JSONDecodeError, "Expecting property name"),
    ('{"Items": [{}', json.JSONDecodeError, "Expecting"),
])
def test_bad_documents(text: str, error: type[Exception], needle: str) -> None:
    with pytest.raises(error, match=needle):
        list(iter_items(text))


def outcome(items: Iterator[Mapping[str, object]]) -> tuple[list[object], str | None]:
    """What a reader yields, and how it ends (its error's type and message)."""
    seen: list[object] = []
    try:
        for item in items:
            seen.append(item)
    except Exception as error:
        return seen, f"{type(error).__name__}: {error}"
    return seen, None


def whole_text(path: Path) -> tuple[list[object], str | None]:
    """The reference: the whole file decoded, then read by iter_items."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        return [], f"ScanFormatError: scan file {str(path)!r} cannot be read: {error}"
    return outcome(_named(path, iter_items(text)))


DOCUMENT_TEXTS = st.builds(
    lambda items, others, indent, first: json.dumps(
        {"Items": items, **others} if first else {**others, "Items": items},
        indent=indent, ensure_ascii=False),
    st.lists(st.dictionaries(st.sampled_from(["tld", "user", "ü€", "S"]),
                             st.one_of(JSON, st.builds(lambda s: {"S": s}, st.text())),
                             max_size=3), max_size=6),
    st.dictionaries(st.sampled_from(["Count", "ScannedCount", "Items"]), JSON, max_size=2),
    st.sampled_from([None, 0, 4]), st.booleans())


def mangled(data: bytes, mode: int, cut: int, junk: bytes) -> bytes:
    """`data` as it is (mode 0), with `junk` inserted at `cut` (1), or cut off there (2)."""
    if mode == 1:
        return data[:cut] + junk + data[cut:]
    if mode == 2:
        return data[:cut]
    return data


@settings(max_examples=300, deadline=None)
@given(DOCUMENT_TEXTS, st.integers(0, 400), st.sampled_from(
    [b"", b"x", b",", b"]", b"}", b" ", b"[", b'"', b"1", b"\xff", b"\xe2\x82", b"{}"]),
       st.integers(0, 2), st.integers(1, 40))
def test_the_streamed_file_reads_as_the_whole_text(
        tmp_path_factory: pytest.TempPathFactory, text: str, cut: int, junk: bytes,
        mode: int, chunk: int) -> None:
    """Read in chunks of a few bytes (multi-byte characters and items cut anywhere), a
    file gives the items and the error, message and position included, of the whole
    text: valid documents, and ones with a byte inserted or the end cut off."""
    path = tmp_path_factory.mktemp("scan") / "scan.json"
    path.write_bytes(mangled(text.encode(), mode, cut, junk))
    whole_reads: list[str] = []

    def counted(text: str) -> Iterator[Mapping[str, object]]:
        whole_reads.append(text)
        return iter_items(text)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(scanfile, "_CHUNK", chunk)
        patch.setattr(scanfile, "iter_items", counted)
        streamed = outcome(load_items(path))
    expected = whole_text(path)
    if mode == 0 and re.match(r'\s*\{\s*"Items"\s*:\s*\[', text) and all(
            isinstance(item, dict) for item in json.loads(text)["Items"]):
        assert whole_reads == [], "a clean document is read as it streams, never whole"
    if expected[1] is not None and "cannot be read" in expected[1]:
        # Not UTF-8: the stream finds out where it reaches the byte, after the items
        # before it (which the command never acts on: it stops with this one line).
        assert streamed[1] == expected[1]
    else:
        assert streamed == expected


# Strings and nested values that hold what separates items (`}, {`, and across lines).
TRICKY = st.text(alphabet='a}{, "\n\\é', max_size=6)
SCAN_VALUE = st.one_of(
    st.builds(lambda s: {"S": s}, TRICKY),
    st.builds(lambda ss: {"L": [{"S": s} for s in ss]}, st.lists(TRICKY, max_size=3)),
    JSON)
SCAN_DOCUMENTS = st.builds(
    lambda items, indent, tail: json.dumps({"Items": items, **tail}, indent=indent,
                                           ensure_ascii=False),
    st.lists(st.dictionaries(st.sampled_from(["tld", "user", "comment", "S"]), SCAN_VALUE,
                             max_size=3) | JSON, max_size=30),
    st.sampled_from([None, 0, 4]),
    st.dictionaries(st.sampled_from(["Count", "ScannedCount"]), st.integers(), max_size=2))


def assert_streamed_as_whole_text(path: Path, *, chunk: int, window: int) -> None:
    """Read in chunks of `chunk` bytes and windows of `window` characters, the file gives
    the items and the error that the whole-text reader gives."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(scanfile, "_CHUNK", chunk)
        patch.setattr(scanfile, "_WINDOW", window)
        streamed = outcome(load_items(path))
    expected = whole_text(path)
    if expected[1] is not None and "cannot be read" in expected[1]:
        assert streamed[1] == expected[1]  # not UTF-8: found where the stream reaches it
    else:
        assert streamed == expected


@settings(max_examples=300, deadline=None)
@given(SCAN_DOCUMENTS, st.integers(1, 300), st.sampled_from([5, 64, 1 << 20]),
       st.integers(0, 2), st.integers(0, 2000), st.sampled_from([b",", b"}", b"]", b" {"]))
def test_items_decoded_a_window_at_a_time_read_as_the_whole_text(
        tmp_path_factory: pytest.TempPathFactory, text: str, window: int, chunk: int,
        mode: int, cut: int, junk: bytes) -> None:
    """Several items decoded by one call (windows of any size, separators inside strings
    and nested values, items that are not objects, a byte inserted or the end cut off):
    the same items and the same error as the whole-text reader."""
    path = tmp_path_factory.mktemp("scan") / "scan.json"
    path.write_bytes(mangled(text.encode(), mode, cut, junk))
    assert_streamed_as_whole_text(path, chunk=chunk, window=window)


@pytest.mark.parametrize("indent", [None, 4])
def test_a_clean_scan_is_decoded_many_items_a_call(tmp_path: Path, indent: int | None) -> None:
    """The items of a scan as `aws dynamodb scan` writes it come a window at a time (one
    decoder call for hundreds of items), not one call per item."""
    items = [{"address": {"S": f"u{i}@s{i % 7}.example.com"}, "tld": {"S": "example.com"},
              "subdomain": {"S": f"s{i % 7}"}, "username": {"S": f"u{i}"},
              "user": {"S": "alice/bob" if i % 5 == 0 else "carol"}} for i in range(3000)]
    path = tmp_path / "scan.json"
    path.write_text(json.dumps({"Items": items, "Count": 3000}, indent=indent))
    pages = list(scanfile.load_pages(path))
    assert [item for page in pages for item in page] == items
    assert len(pages) < 3000 // 50, [len(page) for page in pages]


# Values with what a layout must not take as it is written (escapes, control characters),
# names in one order or another, and now and then an attribute of another type.
PLAIN_OR_NOT = st.text(alphabet='ab}{, é"\\\x01\u2028', max_size=5)
LAID_OUT_ITEMS = st.lists(
    st.builds(lambda values, order, odd: {
        **{name: {"S": value} for name, value in sorted(
            values.items(), key=lambda pair: order.index(pair[0]))},
        **({"x": odd} if odd is not None else {})},
        st.fixed_dictionaries({name: PLAIN_OR_NOT for name in ("tld", "username", "user")}),
        st.sampled_from([["tld", "username", "user"]] * 4 + [["user", "tld", "username"]]),
        st.one_of(st.none(), st.none(), st.none(), JSON)),
    max_size=40)


def laid_out(*values: str, order: tuple[str, ...] = ("tld", "username", "user")) -> (
        dict[str, object]):
    return {name: {"S": value} for name, value in zip(order, values, strict=True)}


ALIKE = [laid_out("a", "b", "c")] * 6


@settings(max_examples=300, deadline=None)
@given(LAID_OUT_ITEMS, st.sampled_from([None, 2]), st.integers(1, 400),
       st.sampled_from([7, 1 << 20]), st.integers(0, 2), st.integers(0, 3000))
@example([*ALIKE, laid_out("c", "a", "b", order=("user", "tld", "username")), *ALIKE],
         None, 200, 1 << 20, 0, 0)
@example([*ALIKE, laid_out("a\x01", "b", "c"), *ALIKE], None, 200, 1 << 20, 0, 0)
@example([*ALIKE, laid_out('a"\\', "b", "c"), *ALIKE], 2, 300, 1 << 20, 0, 0)
@example([*ALIKE, {**laid_out("a", "b", "c"), "x": 1}, *ALIKE], None, 200, 1 << 20, 0, 0)
def test_items_laid_out_alike_read_as_the_whole_text(
        tmp_path_factory: pytest.TempPathFactory, items: list[dict[str, object]],
        indent: int | None, window: int, chunk: int, mode: int, cut: int) -> None:
    """Items read by their layout (values taken as written) are the items the whole-text
    reader gives, with the same error, whatever the values, order and blanks."""
    data = json.dumps({"Items": items, "Count": len(items)}, indent=indent,
                      ensure_ascii=False).encode()
    path = tmp_path_factory.mktemp("scan") / "scan.json"
    path.write_bytes(mangled(data, mode, cut, b","))
    assert_streamed_as_whole_text(path, chunk=chunk, window=window)


def test_items_laid_out_alike_come_as_their_values(tmp_path: Path) -> None:
    """A scan whose items are all DynamoDB strings in one layout comes as StringRows
    (no dict made per attribute), and reads back as the same items."""
    items = [{"tld": {"S": "example.com"}, "username": {"S": f"u{i}"},
              "user": {"S": "alice"}} for i in range(2000)]
    path = tmp_path / "scan.json"
    path.write_text(json.dumps({"Items": items}, indent=4))
    pages = list(scanfile.load_pages(path))
    assert sum(isinstance(page, StringRows) for page in pages) > 1
    assert [item for page in pages for item in page] == items


@pytest.mark.parametrize("raw", ["\x01", "\t", "\x1f"])
def test_a_raw_control_character_in_a_laid_out_value_is_the_readers_error(
        tmp_path: Path, raw: str) -> None:
    """JSON refuses a control character written as it is inside a string: so does the
    layout, and the reader names it where the whole-text reader does."""
    text = json.dumps({"Items": [*ALIKE, laid_out("a\x01", "b", "c"), *ALIKE]})
    path = tmp_path / "scan.json"
    path.write_text(text.replace("\\u0001", raw))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(scanfile, "_WINDOW", 200)
        streamed = outcome(load_items(path))
    assert streamed == whole_text(path)
    assert streamed[1] is not None and "Invalid control character" in streamed[1]
