"""structlog set-up: one JSON object a line in containers, readable key=value at a terminal.

Every line carries `logger` ("reconfigure"), `tier`, `level`, `event` and `timestamp`, so
CloudWatch Logs metric filters can count them (deploy/terraform). What libraries log
through the standard library (botocore, urllib3) goes through the same renderer, tagged
with its `source`, so no plain-text line is ever mixed in.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

LOGGER = "reconfigure"
LEVELS = ("debug", "info", "warning", "error")


def _stamp(tier: str | None) -> structlog.typing.Processor:
    def add(_: object, __: str, event: structlog.typing.EventDict) -> structlog.typing.EventDict:
        event.setdefault("logger", LOGGER)
        event.setdefault("tier", tier or "")
        return event

    return add


def _source(_: object, __: str, event: structlog.typing.EventDict) -> structlog.typing.EventDict:
    """A standard-library record: its logger's name becomes `source`."""
    record = event.get("_record")
    if isinstance(record, logging.LogRecord):
        event["source"] = record.name
    return event


def configure(stream: TextIO | None = None, *, json: bool | None = None,
              level: int | str = logging.INFO, tier: str | None = None) -> None:
    """Idempotent; `json=None` picks JSON unless the stream is a terminal."""
    out = stream if stream is not None else sys.stdout
    as_json = not out.isatty() if json is None else json
    number = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if as_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _stamp(tier),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(number),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, _source],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Libraries are chatty at INFO (botocore's credential lookup on every client): their
    # warnings and errors come through; their details only when debugging.
    root.setLevel(number if number <= logging.DEBUG else logging.WARNING)


def get() -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(LOGGER)
    return logger
