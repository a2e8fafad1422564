"""Reading an `aws dynamodb scan --output json` file for dry runs.

The file is decoded one item at a time, so a caller that validates each item as it
arrives never holds the whole raw table (at 100k rows that alone is ~250 MB of dicts).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

from reconfigure.rows import ScanFormatError

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


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
    cursor.expect("[")
    index = 0
    if cursor.skip() == "]":
        cursor.at += 1
        return
    while True:
        item = cursor.value()
        if not isinstance(item, dict):
            raise ScanFormatError(f"Items[{index}] is not an object")
        yield item
        index += 1
        if cursor.skip() == ",":
            cursor.at += 1
            continue
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
