"""Reading an `aws dynamodb scan --output json` file for dry runs.

The file is decoded as it is read by the C scanner of the `json` module, a few hundred
items a call (docs/design.md §3), so a caller that validates items as they arrive never
holds the whole raw table (at 100k rows that alone is ~250 MB of dicts), and pays no
Python-level step per character, nor one decoder call per item.
"""

from __future__ import annotations

import codecs
import itertools
import json
import re
from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

from reconfigure.rows import ScanFormatError, StringRows

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_BLANKS = " \t\n\r"  # JSON's whitespace: a separator without any skips the regex
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
        if text[at:at + 1] in _BLANKS:  # "" (the end) too, which the match leaves as is
            at = skip(text, at).end()  # type: ignore[union-attr]
        if text[at:at + 1] == ",":
            at += 1
            if text[at:at + 1] in _BLANKS:
                at = skip(text, at).end()  # type: ignore[union-attr]
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


# The file is read _CHUNK bytes at a time, so at most a chunk and one item of its text
# are held (an indented 100k-row scan is ~60 MB of text). The common document, `Items`
# first, is decoded as it streams; anything else, any error included, is left to the
# whole-text reader above from the item where the stream stopped, so every message and
# position is the one that reader gives.
_CHUNK = 1 << 20
_WINDOW = 1 << 16  # characters of items decoded by one call: a few hundred items
_HEAD = re.compile(r'[ \t\n\r]*\{[ \t\n\r]*"Items"[ \t\n\r]*:[ \t\n\r]*\[')


class _Stream:
    """The text of a file as it is read, from the first character not yet consumed."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.text = ""
        self.at = 0
        self.ended = False
        self.count = 0  # items yielded

    def more(self) -> bool:
        """Appends the next chunk (dropping what was consumed); False at the end."""
        if self.ended:
            return False
        data = self.file.read(_CHUNK)
        self.ended = not data
        self.text = self.text[self.at:] + self.decoder.decode(data, final=self.ended)
        self.at = 0
        return True

    def next_char(self) -> str:
        """Skips JSON whitespace, reading on as needed; the next character, "" at the end."""
        while True:
            self.at = _WHITESPACE.match(self.text, self.at).end()  # type: ignore[union-attr]
            if self.at < len(self.text) or not self.more():
                return self.text[self.at:self.at + 1]


def _streamed(stream: _Stream) -> Generator[Page, None, bool]:  # noqa: PLR0912, PLR0915
    """The items of the common document, in lists; returns True after them if the
    document was clean, else False with nothing more to say (the whole-text reader then
    decides). `stream.count` says how many were yielded. The loop keeps the text and
    position in locals; the stream is asked only for the next chunk.

    Once two items have shown what separates items (`}` + blanks, comma, blanks + `{`),
    up to _WINDOW characters of items at a time are decoded by one call: `[` + the text
    up to the last such separator + `]`. That is valid JSON only if the separator was
    found between two items (a cut inside a string or a nested value leaves it
    unclosed), and then it is those items; anything else, and the loop goes on item by
    item from there."""
    scan, skip = _SCAN, _WHITESPACE.match
    while len(stream.text) < 64 and stream.more():
        pass
    head = _HEAD.match(stream.text)
    if head is None:
        return False
    stream.at = head.end()
    if stream.next_char() == "]":
        stream.at += 1
        return _clean_rest(stream)
    text, at, count = stream.text, stream.at, 0
    boundary: str | None = None  # "" once items have proved it unusable
    layout: _Layout | None = None
    try:
        while True:
            if boundary:
                cut = text.rfind(boundary, at, at + _WINDOW)
                if cut > at and layout is not None:
                    after = cut + len(boundary) - 1  # the next item's `{`
                    rows = layout.rows(text, at, after)
                    if rows:
                        yield StringRows(layout.names, rows)
                        count += len(rows)
                        at = after
                        continue
                    layout = None  # items not all alike: decoded by the scanner
                if cut > at:
                    items = _whole_items(text, at, cut + 1)
                    if items is not None:
                        yield items
                        count += len(items)
                        at = cut + len(boundary) - 1
                        continue
                    boundary = ""  # not this file's shape
                elif len(text) - at < _WINDOW and not stream.ended:
                    # The chunk ends inside the next item: read on, rather than let the
                    # scanner fail on it (its error counts the lines before it).
                    stream.at = at
                    stream.more()
                    text, at = stream.text, stream.at
                    continue
            try:
                item, end = scan(text, at)
            except (StopIteration, ValueError):  # cut short by the chunk, or bad
                stream.at = at
                if stream.more():
                    text = stream.text
                    at = skip(text, stream.at).end()  # type: ignore[union-attr]
                    continue
                return False
            if type(item) is not dict:  # a number may be cut short; the reader says
                return False
            yield [item]
            count += 1
            start, at = at, end
            char = text[at:at + 1]
            if char in _BLANKS:  # "" (the chunk's end) too
                at = skip(text, at).end()  # type: ignore[union-attr]
                char = text[at:at + 1]
                if not char:
                    stream.at = at
                    char = stream.next_char()
                    text, at = stream.text, stream.at
                    end = -1  # the separator is not in this text: learn it later
            if char == ",":
                at += 1
                if text[at:at + 1] in _BLANKS:
                    at = skip(text, at).end()  # type: ignore[union-attr]
                if boundary is None and end > 0 and text[end - 1:end] == "}" \
                        and text[at:at + 1] == "{":
                    boundary = text[end - 1:at + 1]
                    layout = _Layout.of(text[start:end], item, text[end:at])
                continue
            stream.at = at
            if char != "]":
                return False
            stream.at += 1
            return _clean_rest(stream)
    finally:
        stream.count = count


def _whole_items(text: str, start: int, end: int) -> list[Mapping[str, object]] | None:
    """The objects of text[start:end] decoded by one call, if that text is whole objects
    separated by commas (a cut inside a string or a nested value leaves it unclosed)."""
    chunk = "[" + text[start:end] + "]"
    try:
        items, stop = _SCAN(chunk, 0)
    except (StopIteration, ValueError):
        return None
    if stop == len(chunk) and type(items) is list and set(map(type, items)) == {dict}:
        return items
    return None


# What the reader yields: decoded items, or items laid out alike as their values.
Page = list[Mapping[str, object]] | StringRows
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
# A string value the layout takes as it is written: no escape, no control character
# (which the scanner refuses), so its text is its value.
# (A class of one excluded character is matched by a tight loop; escapes and control
# characters are looked for afterwards, in all the values at once.)
_PLAIN_VALUE = r'"([^"]*)"'
# Every byte but a backslash and the control characters: deleting them leaves nothing
# from the UTF-8 of plain values.
_PLAIN_BYTES = bytes(byte for byte in range(0x20, 0x100) if byte != ord("\\"))


class _Layout:
    """The text of one item with its values left open, and the separator after it: an
    item written alike (same names in the same order, same blanks) matches it."""

    def __init__(self, names: tuple[str, ...], pattern: str, fixed: int) -> None:
        self.names = names
        self.pattern = re.compile(pattern)
        self.fixed = fixed  # characters of an item and its separator but its values

    @classmethod
    def of(cls, raw: str, item: Mapping[str, object], separator: str) -> _Layout | None:
        """The layout of `raw`, the text of `item`, if it has two or more attributes,
        each a DynamoDB string, and names written without escapes."""
        strings = list(_JSON_STRING.finditer(raw))
        if len(item) < 2 or len(strings) != 3 * len(item) or any(
                type(value) is not dict or len(value) != 1 or type(value.get("S")) is not str
                for value in item.values()):
            return None
        pattern, fixed, at = [], len(raw) + len(separator), 0
        names = []
        for index, string in enumerate(strings):
            pattern.append(re.escape(raw[at:string.start()]))
            if index % 3 == 2:
                pattern.append(_PLAIN_VALUE)
                fixed -= string.end() - string.start() - 2
            elif "\\" in string.group():
                return None
            else:
                pattern.append(re.escape(string.group()))
                if index % 3 == 0:
                    names.append(string.group()[1:-1])
            at = string.end()
        pattern.append(re.escape(raw[at:] + separator))
        if tuple(names) != tuple(item) or [strings[i].group() for i in range(1, len(
                strings), 3)] != ['"S"'] * len(item):
            return None
        return cls(tuple(names), "".join(pattern), fixed)

    def rows(self, text: str, start: int, end: int) -> list[tuple[str, ...]]:
        """The values of the items in text[start:end], each followed by the separator,
        if all are laid out alike; else []. The matches cover the span (no text
        between or around them) exactly when their lengths add up to it."""
        rows: list[tuple[str, ...]] = self.pattern.findall(text, start, end)
        values = "".join(itertools.chain.from_iterable(rows))
        if len(rows) * self.fixed + len(values) != end - start \
                or values.encode().translate(None, _PLAIN_BYTES):
            return []
        return rows


def _clean_rest(stream: _Stream) -> bool:
    """Whether what follows the Items list (Count, ScannedCount and the like, a few
    bytes) is what the whole-text reader accepts."""
    while stream.more():
        pass
    cursor = _Cursor(stream.text[stream.at:])
    try:
        while cursor.skip() == ",":
            cursor.at += 1
            if not isinstance(cursor.value(), str):
                return False
            cursor.expect(":")
            cursor.value()
        cursor.expect("}")
    except (StopIteration, ValueError):
        return False
    return not cursor.skip()


def _read(path: Path, file: BinaryIO) -> Iterator[Page]:
    stream = _Stream(file)
    try:
        with file:
            if (yield from _streamed(stream)):
                return
    except UnicodeDecodeError:
        pass  # the whole-text read below names the byte, counted from the file's start
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ScanFormatError(f"scan file {str(path)!r} cannot be read: {error}") from None
    for item in _named(path, itertools.islice(iter_items(text), stream.count, None)):
        yield [item]


def load_pages(path: Path) -> Iterator[Page]:
    """The file's items in lists (or StringRows), read as they are decoded;
    ScanFormatError with one readable line for anything unusable (a file that is not
    UTF-8: when the read reaches it)."""
    try:
        file = path.open("rb")
    except FileNotFoundError:
        raise ScanFormatError(f"scan file {str(path)!r} does not exist") from None
    except OSError as error:
        raise ScanFormatError(f"scan file {str(path)!r} cannot be read: {error}") from None
    return _read(path, file)


def load_items(path: Path) -> Iterator[Mapping[str, object]]:
    """The items of load_pages, one by one (chained in C: no Python step per item)."""
    return itertools.chain.from_iterable(load_pages(path))


def _named(path: Path, items: Iterator[Mapping[str, object]]) -> Iterator[Mapping[str, object]]:
    try:
        yield from items
    except json.JSONDecodeError as error:
        raise ScanFormatError(f"scan file {str(path)!r} is not JSON: {error}") from None
    except ScanFormatError as error:
        raise ScanFormatError(f"scan file {str(path)!r}: {error}") from None
