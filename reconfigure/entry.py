"""The console script. `health` takes a fast path through `health.py` alone (it runs every
minute in the container); every other command goes through the argument parser in cli.py."""

from __future__ import annotations

import gc
import os
import sys


def main() -> int:
    if sys.argv[1:] == ["health"]:
        from reconfigure import health  # noqa: PLC0415

        return health.main()
    render = sys.argv[1:2] == ["render"]
    if render:
        # A short-lived process that keeps nearly all it allocates: the cyclic garbage
        # collector, which would walk the imports' objects over and over (~10 ms of CPU)
        # and then the tree's, stays off from the start.
        gc.disable()
    from reconfigure import cli  # noqa: PLC0415

    code = cli.main()
    if render:
        _leave(code)
    return code


def _leave(code: int) -> None:
    """Ends a `render` without tearing its objects down one by one (the whole tree and
    every file's text: ~5 % of its CPU at 100k rows). Its files are written and closed
    and no thread runs; only the standard streams may hold output. If they cannot be
    flushed, the interpreter's usual exit reports it."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return
    os._exit(code)
