"""The streaming scan-file reader agrees with json.loads and names what is wrong."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconfigure.rows import ScanFormatError
from reconfigure.scanfile import iter_items

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
