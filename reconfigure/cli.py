"""Command line: parses arguments and calls the functions that do the work.

Each command imports only what it uses: `health` runs every minute in the container and
stays on the standard library; `render` never loads boto3 unless it reads the live table.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from reconfigure.settings import Settings, SettingsError, from_env
from reconfigure.tiers import TIERS

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from reconfigure.render import Rendered
    from reconfigure.rows import Skipped

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        """One line, not the whole usage text: this runs under supervisord."""
        self.exit(EXIT_USAGE, f"reconfigure: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="reconfigure", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    render = commands.add_parser("render", help="dry run: write a tier's text files under DIR")
    render.add_argument("--tier", required=True, choices=sorted(TIERS))
    render.add_argument("--scan-file", type=Path,
                        help="an `aws dynamodb scan --output json` file (default: the live table)")
    render.add_argument("--root", type=Path, required=True, help="directory to write under")
    render.add_argument("--diff", action="store_true",
                        help="print a unified diff against DIR instead of writing")
    commands.add_parser("run", help="the daemon: a cycle per SQS message batch or timer")
    once = commands.add_parser("once", help="one full cycle, then exit (non-zero on failure)")
    once.add_argument("--force", action="store_true",
                      help="apply even if the mass-deletion guard would refuse")
    once.add_argument("--timeout", type=_seconds, metavar="S",
                      help="give up (exit 1, nothing half-applied) after S seconds")
    users = commands.add_parser("users", help="the OS-user pass alone (imap, smtp-out), "
                                "for the entrypoint before Dovecot starts")
    users.add_argument("--timeout", type=_seconds, default=60.0, metavar="S",
                       help="give up (exit 1) after S seconds (default 60)")
    commands.add_parser("health", help="exit 0 when the last cycle succeeded recently")
    status = commands.add_parser("status", help="the last cycle, for a person")
    status.add_argument("--json", action="store_true", help="the status file, for scripts")
    return parser


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError(f"must be between 0 and 86400 seconds: {text}")
    return value


def _summarise_skipped(skipped: Sequence[Skipped]) -> list[str]:
    from collections import Counter  # noqa: PLC0415

    reasons = Counter(s.rule for s in skipped)
    return [f"  {count:>7}  {rule}" for rule, count in sorted(reasons.items())]


def _diff(path: str, old: bytes | None, new: bytes) -> str:
    import difflib  # noqa: PLC0415

    before = (old or b"").decode(errors="replace").splitlines(keepends=True)
    after = new.decode().splitlines(keepends=True)
    return "".join(difflib.unified_diff(
        before, after, fromfile=f"a{path}" if old is not None else "/dev/null",
        tofile=f"b{path}"))


def _write_or_diff(rendered: Rendered, root: Path, *, diff: bool) -> list[str]:
    from reconfigure.files import atomic_write, read_or_none, under  # noqa: PLC0415

    report = []
    for path, data in rendered.files.items():
        target = under(root, path)
        old = read_or_none(target)
        if diff:
            text = _diff(path, old, data)
            if text:
                sys.stdout.write(text)
        elif old == data:
            report.append(f"unchanged {target}")
        else:
            atomic_write(target, data)
            report.append(f"wrote     {target}")
    return report


def _render_logger(settings: Settings) -> FilteringBoundLogger:
    """structlog on stderr, set up on first use: a clean scan file never imports it."""
    from reconfigure import log  # noqa: PLC0415

    log.configure(sys.stderr, level=settings.log_level, tier=settings.tier)
    return log.get()


def render_command(args: argparse.Namespace, settings: Settings) -> int:
    """Imports only the renderer, jinja2 and the standard library unless there is
    something to log or the live table to read (the console script also keeps the
    garbage collector off for it: entry.py)."""
    from reconfigure.render import RenderOptions, render_tier  # noqa: PLC0415
    from reconfigure.tree import TreeBuilder  # noqa: PLC0415

    builder = TreeBuilder()
    logger: FilteringBoundLogger | None = None
    if args.scan_file is not None:
        from reconfigure.scanfile import load_pages  # noqa: PLC0415

        skipped = []
        for page in load_pages(args.scan_file):
            skipped.extend(builder.add(page))
    else:
        from reconfigure import table  # noqa: PLC0415 - boto3 only when the table is read
        from reconfigure.aws import Aws  # noqa: PLC0415
        from reconfigure.rows import ATTRIBUTES  # noqa: PLC0415

        logger = _render_logger(settings)  # botocore's own warnings go through it
        skipped = []
        aws = Aws.from_settings(settings)
        for page in table.scan_pages(aws, ATTRIBUTES, settings.scan_segments):
            skipped.extend(builder.add(page))
    if skipped and logger is None:
        logger = _render_logger(settings)
    for row in skipped:
        assert logger is not None
        logger.warning("row skipped", address=row.address, rule=row.rule)
    rendered = render_tier(TIERS[settings.tier], builder.tree,
                           RenderOptions(settings.relay_host, settings.sinkhole_enabled))
    if rendered.dropped and logger is None:
        logger = _render_logger(settings)
    for line in rendered.dropped:
        assert logger is not None
        logger.warning("duplicate map key dropped", path=line.path, line=line.line,
                       kept=line.kept)
    report = _write_or_diff(rendered, args.root, diff=args.diff)
    if not args.diff:
        print(f"rows read: {builder.rows}, skipped: {len(builder.skipped)}")
        print("\n".join(_summarise_skipped(builder.skipped) + report))
    return 0


def _status_settings(env: dict[str, str]) -> tuple[Path, float]:
    """The status file and interval: all `health` and `status` need (no AWS, no tier)."""
    settings = from_env({"TIER": "imap", "CERT_DOMAIN": "health.invalid", **env},
                        need_aws=False)
    return settings.path(settings.status_file), settings.interval


def status_command(args: argparse.Namespace, env: dict[str, str]) -> int:
    """The last cycle for a person (`--json`: the status file as it is)."""
    import json  # noqa: PLC0415
    import time  # noqa: PLC0415

    from reconfigure import health, status  # noqa: PLC0415

    path, interval = _status_settings(env)
    current = health.load(path)
    if args.json:
        print(json.dumps(current, indent=1, sort_keys=True))
    else:
        print(status.describe(current, now=time.time(), interval=interval, path=path))
    return 0 if health.verdict(current, now=time.time(), interval=interval)[0] else 1


def _check(args: argparse.Namespace, env: dict[str, str]) -> int:
    """`health` and `status`: 0 or 1 only, whatever goes wrong."""
    if args.command == "health":
        from reconfigure import health  # noqa: PLC0415

        return health.main(env)
    try:
        return status_command(args, env)
    except SettingsError as error:
        print(f"reconfigure: {error}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser().parse_args(words)
    except SystemExit as usage:
        # Docker reserves a HEALTHCHECK's exit 2: a mistyped check is "unhealthy" (1).
        if usage.code == EXIT_USAGE and words[:1] in (["health"], ["status"]):
            return 1
        raise
    env = dict(os.environ)
    if args.command in ("health", "status"):
        return _check(args, env)
    from reconfigure.rows import ScanFormatError  # noqa: PLC0415

    try:
        if args.command == "render":
            settings = from_env({**env, "TIER": args.tier}, need_aws=args.scan_file is None)
            return render_command(args, settings)
        from reconfigure import log  # noqa: PLC0415

        settings = from_env(env)
        log.configure(sys.stdout, level=settings.log_level, tier=settings.tier)
        # boto3 and requests are imported only by the commands that talk to AWS.
        from reconfigure import app  # noqa: PLC0415

        commands = {
            "once": lambda: app.once(settings, force=args.force, timeout=args.timeout),
            "users": lambda: app.users(settings, timeout=args.timeout),
            "run": lambda: app.run(settings, env),
        }
        return commands[args.command]()
    except (SettingsError, ScanFormatError) as error:
        print(f"reconfigure: {error}", file=sys.stderr)
        return EXIT_USAGE
