"""Reading the sources: DynamoDB scan pages and Cognito ListUsers pages, complete or not at all.

Raw records only (no domain imports): the caller validates each page as it arrives, so
no raw page outlives its turn.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from reconfigure.aws import Aws, Call

Page = list[Mapping[str, Any]]
COGNITO_PAGE_SIZE = 60  # the largest Limit ListUsers accepts
_DONE = object()


def _segment_pages(aws: Aws, attributes: Sequence[str], segment: int,
                   total: int) -> Iterator[Page]:
    request: dict[str, Any] = {
        "TableName": aws.table,
        "ConsistentRead": True,
        "ProjectionExpression": ", ".join(f"#a{i}" for i in range(len(attributes))),
        "ExpressionAttributeNames": {f"#a{i}": name for i, name in enumerate(attributes)},
    }
    if total > 1:
        request.update(Segment=segment, TotalSegments=total)
    while True:
        page = aws.call("dynamodb.scan", lambda: aws.dynamodb.scan(**request))
        yield page.get("Items", [])
        start = page.get("LastEvaluatedKey")
        if not start:
            return
        request["ExclusiveStartKey"] = start


def scan_pages(aws: Aws, attributes: Sequence[str], segments: int = 1) -> Iterator[Page]:
    """Every page of the address table (consistent reads, only `attributes`). With several
    segments, each is scanned by its own thread and pages arrive in any order; the first
    error ends the scan and is raised here."""
    if segments <= 1:
        yield from _segment_pages(aws, attributes, 0, 1)
        return
    pages: queue.Queue[object] = queue.Queue(maxsize=2 * segments)
    abandoned = threading.Event()

    def put(value: object) -> None:
        while not abandoned.is_set():
            try:
                pages.put(value, timeout=0.1)
                return
            except queue.Full:
                continue

    def scan(segment: int) -> None:
        try:
            for page in _segment_pages(aws, attributes, segment, segments):
                if abandoned.is_set():
                    return
                put(page)
        except BaseException as error:  # handed to the reader, which raises it
            put(error)
        put(_DONE)

    for segment in range(segments):
        threading.Thread(target=scan, args=(segment,), name=f"scan-{segment}",
                         daemon=True).start()
    try:
        finished = 0
        while finished < segments:
            value = pages.get()
            if value is _DONE:
                finished += 1
            elif isinstance(value, BaseException):
                raise value
            else:
                yield value  # type: ignore[misc]
    finally:
        abandoned.set()


def user_pages(cognito: Any, pool_id: str, call: Call) -> Iterator[Page]:
    """Every page of ListUsers (the `Users` records), with the osid attribute only."""
    request: dict[str, Any] = {"UserPoolId": pool_id, "Limit": COGNITO_PAGE_SIZE,
                               "AttributesToGet": ["custom:osid"]}
    while True:
        response = call("cognito-idp.list_users", lambda: cognito.list_users(**request))
        yield response.get("Users", [])
        token = response.get("PaginationToken")
        if not token:
            return
        request["PaginationToken"] = token
