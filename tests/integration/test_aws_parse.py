"""The daemon's DynamoDB client parses items on a short path (docs/design.md §6: an idle
daemon's cycles cost little); its answers must be exactly botocore's own."""

from __future__ import annotations

import base64
from typing import Any

from reconfigure import aws
from tests.support.world import REGION, AwsWorld

ODD_ITEMS: list[dict[str, Any]] = [
    {"address": {"S": "plain@a.example"}, "user": {"S": "alice"}, "n": {"N": "12.5"}},
    {"address": {"S": "nested@a.example"}, "flag": {"BOOL": False}, "none": {"NULL": True},
     "m": {"M": {"k": {"S": "v"}, "deep": {"L": [{"N": "1"}, {"M": {}}, {"L": []}]}}},
     "ss": {"SS": ["x", "y"]}, "ns": {"NS": ["1", "2"]}},
    {"address": {"S": "binary@a.example"}, "b": {"B": b"\x00\xffraw"},
     "bs": {"BS": [b"one", b"two"]}, "mixed": {"L": [{"S": "s"}, {"B": b"\x01"}]}},
    {"address": {"S": "empty@a.example"}, "s": {"S": ""}, "l": {"L": []}, "m": {"M": {}}},
]


def _scan(client: Any, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.scan(TableName=table, ConsistentRead=True)["Items"]
    return sorted(items, key=lambda item: str(item["address"]["S"]))


def test_items_parse_exactly_as_botocore_does(world: AwsWorld) -> None:
    world.client("dynamodb").batch_write_item(RequestItems={world.table: [
        {"PutRequest": {"Item": item}} for item in ODD_ITEMS]})
    stock = world.client("dynamodb")
    ours = aws.session(REGION).client("dynamodb", endpoint_url=world.endpoint,
                                      aws_access_key_id="testing",
                                      aws_secret_access_key="testing")
    expected = _scan(stock, world.table)
    assert len(expected) == len(ODD_ITEMS)
    assert _scan(ours, world.table) == expected
    binary = next(i for i in expected if i["address"]["S"] == "binary@a.example")
    assert binary["b"] == {"B": b"\x00\xffraw"}  # decoded, not the wire's base64
    assert base64.b64encode(binary["b"]["B"]) != binary["b"]["B"]


def test_short_path_takes_common_items_and_leaves_the_rest() -> None:
    """The short path itself: the common tags are handled; binary and malformed values
    are refused (botocore's own parse then runs)."""
    aws._check({"M": {"k": {"L": [{"N": "1"}, {"BOOL": True}, {"SS": ["a"]}]}}})
    for unusual in ({"B": "AAE="}, {"S": None}, {"S": "a", "N": "1"}, {"L": [None]},
                    {"SS": ["a", None]}, {"NULL": "yes"}, "S", {"M": {"k": {"B": "AA=="}}},
                    {"L": [{"S": "a"}, {"X": "b"}]}):
        try:
            aws._check(unusual)
        except aws._Unusual:
            continue
        raise AssertionError(f"short path took {unusual!r}")
