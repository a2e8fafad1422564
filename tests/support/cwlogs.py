"""A small evaluator for the part of CloudWatch Logs' JSON filter syntax that deploy/ uses.

CloudWatch cannot be reached from a test, so the metric filters in
deploy/terraform/reconfigure-monitoring.tf are checked against sample log lines with this
stand-in. It accepts only `{ $.a.b = "text" && ... }` (string equality on JSON fields, joined
by `&&`) and refuses anything else, so a filter rewritten with other syntax fails its test
instead of being half understood.
"""

from __future__ import annotations

import json
import re

Condition = tuple[tuple[str, ...], str]  # (field path, expected string)

_CONDITION = re.compile(r'\s*\$((?:\.[A-Za-z_][A-Za-z0-9_]*)+)\s*=\s*"((?:[^"\\]|\\.)*)"\s*')
_SELECTOR = re.compile(r"\$((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


def parse(pattern: str) -> list[Condition]:
    """The conditions of a pattern; ValueError for anything outside the subset."""
    text = pattern.strip()
    if not (text.startswith("{") and text.endswith("}")):
        raise ValueError(f"not a JSON filter pattern: {pattern!r}")
    conditions: list[Condition] = []
    for part in _split_and(text[1:-1]):
        match = _CONDITION.fullmatch(part)
        if match is None:
            raise ValueError(f"outside the supported subset: {part.strip()!r}")
        path, raw = match.groups()
        value = json.loads(f'"{raw}"')  # CloudWatch's string escapes are JSON's
        if "*" in value:
            raise ValueError(f"wildcards are outside the supported subset: {value!r}")
        conditions.append((tuple(path[1:].split(".")), value))
    return conditions


def _split_and(body: str) -> list[str]:
    """Split on `&&` outside double quotes; a `||` or parenthesis is refused."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    index = 0
    while index < len(body):
        char = body[index]
        if quoted:
            current.append(char)
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
        elif char == '"':
            quoted = True
            current.append(char)
        elif body.startswith("&&", index):
            parts.append("".join(current))
            current = []
            index += 1
        elif body.startswith("||", index) or char in "()":
            raise ValueError(f"outside the supported subset: {body.strip()!r}")
        else:
            current.append(char)
        index += 1
    if quoted:
        raise ValueError(f"unterminated string in {body!r}")
    parts.append("".join(current))
    return parts


def _field(event: object, path: tuple[str, ...]) -> object:
    for key in path:
        if not isinstance(event, dict) or key not in event:
            return None
        event = event[key]
    return event


def _event(line: str) -> object:
    try:
        return json.loads(line)
    except ValueError:
        return None  # CloudWatch: a line that is not JSON matches no JSON pattern


def matches(pattern: str, line: str) -> bool:
    """Whether CloudWatch would count `line` (one log event) for `pattern`."""
    conditions = parse(pattern)
    event = _event(line)
    if not isinstance(event, dict):
        return False
    return all(_field(event, path) == value for path, value in conditions)


def selected(selector: str, line: str) -> object:
    """What a `$.a.b` selector (a metric value or dimension) takes from `line`, or the
    selector itself when it is a literal such as "1"."""
    match = _SELECTOR.fullmatch(selector)
    if match is None:
        return selector
    return _field(_event(line), tuple(match.group(1)[1:].split(".")))
