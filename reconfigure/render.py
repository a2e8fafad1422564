"""Domain tree → the bytes of each generated file (docs/design.md §4).

Pure: templates are the only input. The view hands each template a domain's usernames as
one sorted list, which its filters write as one block; a hash map's text is checked for
repeated keys in one pass, and taken line by line only when it has some."""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import jinja2

from reconfigure.tiers import Artifact, Tier
from reconfigure.tree import Tree, address_losers, shared_aliases, sorted_view


@dataclass(frozen=True, slots=True)
class RenderOptions:
    relay_host: str  # <H>: IMAP_INTERNAL_HOST, else imap.<CERT_DOMAIN>
    sinkhole_enabled: bool = False


@dataclass(frozen=True, slots=True)
class DroppedLine:
    """A hash-map line left out because another line has the same key for makemap."""

    path: str
    line: str
    kept: str  # the line that has the key


@dataclass(frozen=True, slots=True)
class Rendered:
    files: dict[str, bytes]  # absolute path → content, in the tier table's order
    dropped: list[DroppedLine]


def lines(names: list[str], before: str, after: str) -> str:
    """One line per name, `before` + name + `after`: a whole block in one join."""
    if not names:
        return ""
    return before + f"{after}\n{before}".join(names) + after + "\n"


def zip_lines(firsts: list[str], seconds: list[str], middle: str) -> str:
    """One line per pair, first + `middle` + second: the pieces laid out in one list
    by slice assignments, then one join (no string made per line)."""
    count = len(firsts)
    if len(seconds) != count:
        raise ValueError("zip_lines: the columns differ in length")
    parts = [middle] * (4 * count)
    parts[0::4] = firsts
    parts[2::4] = seconds
    parts[3::4] = ["\n"] * count
    return "".join(parts)


@functools.cache
def environment() -> jinja2.Environment:
    """Strict and literal: a missing variable is an error, and nothing is escaped. The
    filters `lines` and `zip_lines` let a template write a domain's lines as one block."""
    env = jinja2.Environment(
        # The wheel ships them as reconfigure/templates; in a checkout that is a symlink
        # to the top-level templates/ folder.
        loader=jinja2.PackageLoader("reconfigure", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # noqa: S701 - sendmail maps, not HTML
        keep_trailing_newline=False,
    )
    env.filters["lines"] = lines
    env.filters["zip_lines"] = zip_lines
    return env


def _lines(text: str) -> list[str]:
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def map_keys(lines: list[str]) -> list[str]:
    """The key makemap stores for each line: up to the first blank, ASCII lower-cased
    (bytes.lower touches ASCII letters only, as makemap does); "" for a blank line."""
    if not lines:
        return []
    lowered = "\n".join(lines).encode().lower().decode().split("\n")
    return [line.split(None, 1)[0] if line else "" for line in lowered]


def _unique_keys(path: str, lines: list[str], seen: dict[str, str],
                 dropped: list[DroppedLine]) -> list[str]:
    """Drop each line whose key an earlier line already has (`seen`: key → line)."""
    keys = map_keys(lines)
    fresh = set(keys)
    fresh.discard("")
    if len(fresh) + keys.count("") == len(keys) and fresh.isdisjoint(seen):  # no duplicate
        seen.update(zip(keys, lines, strict=True))
        return lines
    kept = []
    for line, key in zip(lines, keys, strict=True):
        if key:
            if key in seen:
                dropped.append(DroppedLine(path, line, seen[key]))
                continue
            seen[key] = line
        kept.append(line)
    return kept


def _case_variant_lines(path: str, everything: list[str], kept: list[str],
                        kept_keys: list[str] | None, dropped: list[DroppedLine]) -> None:
    """The lines of addresses that lost their key to an older case variant: those of
    the rendering with every address that the rendering without the losers lacks, each
    with the last kept line that has its key. `kept_keys`: map_keys(kept), if known."""
    distinct = set(everything)
    if len(distinct) == len(everything):  # each line once: missing is a set difference
        distinct.difference_update(kept)
        lost = [line for line in everything if line in distinct]
    else:
        missing = Counter(everything)
        missing.subtract(kept)
        lost = []
        for line in everything:
            if missing[line] > 0:
                missing[line] -= 1
                lost.append(line)
    lost_keys = map_keys(lost)
    needed = set(lost_keys)
    by_key: dict[str, str] = {}
    for line, key in zip(kept, map_keys(kept) if kept_keys is None else kept_keys,
                         strict=True):
        if key in needed:
            by_key[key] = line
    dropped.extend(DroppedLine(path, line, by_key.get(key, ""))
                   for line, key in zip(lost, lost_keys, strict=True))


# A key is a line up to its first blank (str.split's blanks, which are \s's); a line
# that starts with a blank has a key str.split finds further on: such text takes the
# line-by-line path.
_KEY = re.compile(r"^\S*", re.MULTILINE)
_LEADING_BLANK = re.compile(r"\n[^\S\n]")  # a literal first: searched at C speed


_BLOCK = 1 << 18  # characters taken at a time: the pieces of one block are all held
_GRAPHIC = bytes(range(0x21, 0x7F))  # ASCII but blanks and control characters


def _tab_keys(lowered: str) -> list[str] | None:
    """The keys of a text whose every line is key<TAB>value<NEWLINE>, with no blank in
    its key: cut by the string methods (far fewer steps than a regular expression
    over every character), a block of lines at a time; None for any other text."""
    if not lowered.endswith("\n"):
        return None
    keys: list[str] = []
    start, size = 0, len(lowered)
    while start < size:
        end = lowered.find("\n", start + _BLOCK) + 1 or size
        block = _block_keys(lowered[start:end])
        if block is None:
            return None
        keys += block
        start = end
    return keys


def _block_keys(lines: str) -> list[str] | None:
    """_tab_keys of whole lines. Split at tabs and newlines alike, the pieces are key,
    value, key, value, ...; that reading is the text's only if laying them out again
    gives the text back. A key with no blank has no character str.isspace knows: in
    ASCII, only graphic characters (all the rest deleted, nothing is left); else none
    that str.isprintable rejects, nor a space (the one blank it accepts). An empty key
    is a line that starts with a blank, which the regular expression path handles."""
    if lines[:1] == "\t" or "\n\t" in lines:  # an empty key
        return None
    pieces = lines.replace("\t", "\n").split("\n")
    keys, values = pieces[0:-1:2], pieces[1::2]
    if len(keys) != len(values) or zip_lines(keys, values, "\t") != lines:
        return None
    names = "".join(keys)
    if names.encode().translate(None, _GRAPHIC) if names.isascii() \
            else " " in names or not names.isprintable():
        return None
    return keys


def _text_keys(text: str) -> list[str] | None:
    """map_keys(_lines(text)) in one pass over the text; None if a line starts with a
    blank (map_keys then decides)."""
    lowered = text.lower() if text.isascii() else text.encode().lower().decode()
    tab_keys = _tab_keys(lowered)
    if tab_keys is not None:
        return tab_keys
    if (lowered[:1].isspace() and lowered[:1] != "\n") or _LEADING_BLANK.search(lowered):
        return None
    keys: list[str] = _KEY.findall(lowered)
    if not text or text.endswith("\n"):
        keys.pop()  # what follows the final newline is no line
    return keys


def _distinct(*key_lists: list[str]) -> bool:
    """Whether no two lines have the same key (blank lines have none): then no line is
    dropped and the text is the file as it is."""
    seen: set[str] = set()
    count = 0
    for keys in key_lists:
        seen.update(keys)
        count += len(keys)
    if "" in seen:  # blank lines: rare, so they are counted only when there are some
        count -= sum(keys.count("") for keys in key_lists)
        seen.discard("")
    return len(seen) == count


def _module(artifact: Artifact, context: Mapping[str, object]) -> tuple[list[str], list[str]]:
    template = environment().get_template(artifact.template)
    module = template.make_module({**context, **artifact.params})
    return _lines(str(module)), _lines(str(getattr(module, "trailer", "")))


def _file(body: str, after: str) -> bytes:
    """What the line-by-line path gives when no line is dropped."""
    text = body if body.endswith("\n") else body + "\n"
    return (text + after if after.endswith("\n") or not after else text + after + "\n").encode()


def render_artifact(artifact: Artifact, context: Mapping[str, object],
                    dropped: list[DroppedLine],
                    everything: Mapping[str, object] | None = None) -> bytes:
    """A file is its lines joined by \\n plus one final \\n; a template's `trailer`
    (the sinkhole route) follows that final newline. `everything`: the context with the
    addresses that `context` leaves out as case variants, to report their lines."""
    template = environment().get_template(artifact.template)
    module = template.make_module({**context, **artifact.params})
    body, after = str(module), str(getattr(module, "trailer", ""))
    if not artifact.hash_map:
        return _file(body, after)
    body_keys, after_keys = _text_keys(body), _text_keys(after)
    if everything is not None:
        _case_variant_lines(artifact.path, _module(artifact, everything)[0], _lines(body),
                            body_keys, dropped)
    if body_keys is not None and after_keys is not None and _distinct(body_keys, after_keys):
        return _file(body, after)
    lines, trailer = _lines(body), _lines(after)
    seen: dict[str, str] = {}
    lines = _unique_keys(artifact.path, lines, seen, dropped)
    trailer = _unique_keys(artifact.path, trailer, seen, dropped)
    text = "\n".join(lines) + "\n" + "".join(line + "\n" for line in trailer)
    return text.encode()


def render_tier(tier: Tier, tree: Tree, options: RenderOptions) -> Rendered:
    """In the hash maps an address whose key an older case variant has is left out
    (its domain lines stay); any other line whose key an earlier line has is dropped."""
    losers = address_losers(tree)
    context: dict[str, object] = {
        "tlds": sorted_view(tree, losers),
        "aliases": shared_aliases(tree),
        "relay_host": options.relay_host,
        "sinkhole_enabled": options.sinkhole_enabled,
    }
    everything = {**context, "tlds": sorted_view(tree)} if losers else None
    dropped: list[DroppedLine] = []
    files: dict[str, bytes] = {}
    cache: dict[tuple[str, tuple[tuple[str, object], ...], bool], bytes] = {}
    for artifact in tier.artifacts:
        # The same list feeds several class files: render it once.
        key = (artifact.template, tuple(sorted(artifact.params.items())), artifact.hash_map)
        if key not in cache:
            cache[key] = render_artifact(artifact, context, dropped, everything)
        files[artifact.path] = cache[key]
    return Rendered(files, dropped)
