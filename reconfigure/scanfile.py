"""Reading an `aws dynamodb scan --output json` file for dry runs.

The file is decoded one item at a time by the C scanner of the `json` module, so a
caller that validates each item as it arrives never holds the whole raw table (at 100k
rows that alone is ~250 MB of dicts), and pays no Python-level parsing per character.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from reconfigure.rows import ScanFormatError

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
# What raw_decode calls (the C scanner): a value at an index → (value, end index).
_SCAN: Callable[[str, int], tuple[object, int]] = _DECODER.scan_once  # type: ignore[attr-defined]


class _Cursor:
    def __init__(self, text: str) -> None:
        self.text = text
        self.at = 0

    def skip(self) -> str:
        """Skip JSON whitespace; the next character, or "" at the end."""
        match = _WHITESPACE.match(self.text, self.at)
        self.at = match.end() if match else self.at
        return self.text[self.at:self.at + 1]

    def expect(self, char: str) -> None:
        if self.skip() != char:
            raise json.JSONDecodeError(f"Expecting {char!r}", self.text, self.at)
        self.at += 1

    def value(self) -> object:
        self.skip()
        value, self.at = _DECODER.raw_decode(self.text, self.at)
        return value


def _items(cursor: _Cursor) -> Iterator[Mapping[str, object]]:
    """The items of the list at the cursor, leaving the cursor after its `]`.

    The loop is `raw_decode` and `skip` inlined (the C scanner called directly, one
    whitespace match a separator): the same errors at the same positions, a third of
    the time."""
    text = cursor.text
    skip = _WHITESPACE.match
    scan = _SCAN
    cursor.expect("[")
    at = skip(text, cursor.at).end()  # type: ignore[union-attr]  # [ \t\n\r]* always matches
    if text[at:at + 1] == "]":
        cursor.at = at + 1
        return
    index = 0
    while True:
        try:
            item, at = scan(text, at)
        except StopIteration as error:
            cursor.at = at
            raise json.JSONDecodeError("Expecting value", text, error.value) from None
        if not isinstance(item, dict):
            raise ScanFormatError(f"Items[{index}] is not an object")
        yield item
        index += 1
        at = skip(text, at).end()  # type: ignore[union-attr]
        if text[at:at + 1] == ",":
            at = skip(text, at + 1).end()  # type: ignore[union-attr]
            continue
        cursor.at = at
        cursor.expect("]")
        return


def iter_items(text: str) -> Iterator[Mapping[str, object]]:
    """The `Items` of a scan document, decoded lazily; errors (ScanFormatError or
    json.JSONDecodeError) surface when the iterator reaches them."""
    cursor = _Cursor(text)
    if cursor.skip() != "{":
        cursor.value()  # raises if the text is not JSON at all
        raise ScanFormatError("scan document is not a JSON object")
    cursor.at += 1
    seen_items = False
    if cursor.skip() != "}":
        while True:
            key = cursor.value()
            if not isinstance(key, str):
                raise json.JSONDecodeError("Expecting property name", text, cursor.at)
            cursor.expect(":")
            if key == "Items" and cursor.skip() == "[" and not seen_items:
                seen_items = True
                yield from _items(cursor)
            else:
                cursor.value()
            if cursor.skip() != ",":
                break
            cursor.at += 1
    cursor.expect("}")
    if cursor.skip():
        raise json.JSONDecodeError("Extra data", text, cursor.at)
    if not seen_items:
        raise ScanFormatError('scan document has no "Items" list')


def load_items(path: Path) -> Iterator[Mapping[str, object]]:
    """The file's items; ScanFormatError with one readable line for anything unusable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScanFormatError(f"scan file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ScanFormatError(f"scan file {str(path)!r} cannot be read: {error}") from None
    return _named(path, iter_items(text))


def _named(path: Path, items: Iterator[Mapping[str, object]]) -> Iterator[Mapping[str, object]]:
    try:
        yield from items
    except json.JSONDecodeError as error:
        raise ScanFormatError(f"scan file {str(path)!r} is not JSON: {error}") from None
    except ScanFormatError as error:
        raise ScanFormatError(f"scan file {str(path)!r}: {error}") from None
