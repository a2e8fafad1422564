"""`reconfigure render` as a process: output tree, summary, --diff, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.items import item, worked_example

ENV = {"CERT_DOMAIN": "cabal.example", "IMAP_INTERNAL_HOST": "imap.cabal.internal"}


def run(*args: str, env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("CERT_DOMAIN", "IMAP_INTERNAL_HOST", "SINKHOLE_ENABLED", "TIER")}
    full_env.update(ENV if env is None else env)
    return subprocess.run([sys.executable, "-m", "reconfigure", *args], env=full_env,
                          capture_output=True, text=True, timeout=60, cwd=cwd, check=False)


@pytest.fixture
def scan(tmp_path: Path) -> Path:
    path = tmp_path / "scan.json"
    path.write_text(json.dumps({"Items": worked_example(), "Count": 5}))
    return path


def test_render_writes_the_tier_files_under_root(scan: Path, tmp_path: Path) -> None:
    root = tmp_path / "out"
    result = run("render", "--tier", "imap", "--scan-file", str(scan), "--root", str(root))
    assert result.returncode == 0, result.stderr
    written = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert written == ["etc/aliases.dynamic", "etc/mail/access", "etc/mail/local-host-names",
                       "etc/mail/relay-domains", "etc/mail/virtusertable"]
    assert (root / "etc/aliases.dynamic").read_text() == "alice_carol: alice, carol\n"
    assert "rows read: 5, skipped: 1" in result.stdout
    assert "username: contains whitespace or a control character" in result.stdout
    warnings = [json.loads(line) for line in result.stderr.splitlines()]
    assert [(w["event"], w["address"]) for w in warnings] == [
        ("row skipped", "bad guy@acme.example.com")]


def test_render_twice_reports_unchanged(scan: Path, tmp_path: Path) -> None:
    root = tmp_path / "out"
    args = ("render", "--tier", "smtp-out", "--scan-file", str(scan), "--root", str(root))
    assert run(*args).returncode == 0
    second = run(*args)
    assert second.stdout.count("unchanged") == 5 and "wrote" not in second.stdout


def test_sinkhole_and_relay_host_come_from_the_environment(scan: Path, tmp_path: Path) -> None:
    root = tmp_path / "out"
    env = {"CERT_DOMAIN": "cabal.example", "SINKHOLE_ENABLED": "true"}
    assert run("render", "--tier", "smtp-out", "--scan-file", str(scan), "--root", str(root),
               env=env).returncode == 0
    lines = (root / "etc/mail/mailertable").read_text().splitlines()
    assert lines[0] == ".example.com\tsmtp:[imap.cabal.example]"
    assert lines[-1] == "sinkhole.test\tsmtp:[sinkhole.cabal.internal]:25"


def test_diff_prints_changes_and_writes_nothing(scan: Path, tmp_path: Path) -> None:
    root = tmp_path / "out"
    target = root / "etc/mail/virtusertable"
    target.parent.mkdir(parents=True)
    target.write_text("old@example.com\talice\n")
    result = run("render", "--tier", "imap", "--scan-file", str(scan), "--root", str(root),
                 "--diff")
    assert result.returncode == 0, result.stderr
    assert "-old@example.com\talice" in result.stdout
    assert "+shop@acme.example.com\talice_carol" in result.stdout
    assert "+++ b/etc/mail/access" in result.stdout
    assert target.read_text() == "old@example.com\talice\n"
    assert sorted(p.name for p in root.rglob("*") if p.is_file()) == ["virtusertable"]


@pytest.mark.parametrize(("content", "needle"), [
    (None, "does not exist"),
    ("{not json", "is not JSON"),
    ("[]", "not a JSON object"),
    ('{"Count": 1}', '"Items" list'),
    ('{"Items": [1, 2]}', "Items[0] is not an object"),
    (b"\xff\xfe", "cannot be read"),
])
def test_bad_scan_file_is_one_line_exit_2_nothing_written(
        tmp_path: Path, content: str | bytes | None, needle: str) -> None:
    path = tmp_path / "scan.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    root = tmp_path / "out"
    result = run("render", "--tier", "imap", "--scan-file", str(path), "--root", str(root))
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and needle in result.stderr
    assert not root.exists()


@pytest.mark.parametrize(("args", "env", "needle"), [
    (("--tier", "pop3"), ENV, "invalid choice"),
    (("--tier", "imap"), {}, "CERT_DOMAIN: required"),
    (("--tier", "imap"), {"CERT_DOMAIN": "bad domain"}, "CERT_DOMAIN: not a domain"),
    (("--tier", "imap"), {"CERT_DOMAIN": "x.example", "IMAP_INTERNAL_HOST": "a b"},
     "IMAP_INTERNAL_HOST"),
])
def test_bad_settings_are_one_line_exit_2(
        tmp_path: Path, scan: Path, args: tuple[str, ...], env: dict[str, str],
        needle: str) -> None:
    root = tmp_path / "out"
    result = run("render", *args, "--scan-file", str(scan), "--root", str(root), env=env)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and needle in result.stderr, result.stderr
    assert not root.exists()


def test_a_bad_row_among_good_ones_still_renders(tmp_path: Path) -> None:
    path = tmp_path / "scan.json"
    rows = [item("ok", "example.com", "alice"), {"address": {"S": "x"}, "tld": {"N": "1"}}]
    path.write_text(json.dumps({"Items": rows}))
    root = tmp_path / "out"
    result = run("render", "--tier", "smtp-in", "--scan-file", str(path), "--root", str(root))
    assert result.returncode == 0
    assert (root / "etc/mail/virtusertable").read_text() == "ok@example.com\talice\n"
    assert "tld: not a DynamoDB string (S) attribute" in result.stderr


def test_a_dropped_case_variant_is_logged_with_the_line_it_lost_to(tmp_path: Path) -> None:
    path = tmp_path / "scan.json"
    rows = [item("ADMIN", "example.com", "mallory", "s1", RequestTime={"S": "2025-01-01"}),
            item("admin", "example.com", "alice", "s1", RequestTime={"S": "2024-01-01"})]
    path.write_text(json.dumps({"Items": rows}))
    root = tmp_path / "out"
    result = run("render", "--tier", "imap", "--scan-file", str(path), "--root", str(root))
    assert result.returncode == 0, result.stderr
    assert (root / "etc/mail/virtusertable").read_text() == "admin@s1.example.com\talice\n"
    warnings = [json.loads(line) for line in result.stderr.splitlines()]
    assert {(w["event"], w["path"], w["line"], w["kept"]) for w in warnings} == {
        ("duplicate map key dropped", "/etc/mail/virtusertable",
         "ADMIN@s1.example.com\tmallory", "admin@s1.example.com\talice"),
        ("duplicate map key dropped", "/etc/mail/access",
         "To:ADMIN@s1.example.com\tOK", "To:admin@s1.example.com\tOK"),
    }


# What `render` of a scan file must not load (design.md §4: a dry run needs no AWS, and
# stays cheap at 100k rows): run in a fresh interpreter, which then lists what it holds
# (the console script's entry.main would end the process when the render is done).
HEAVY = ("boto3", "botocore", "structlog", "requests")
RENDER_IN_PROCESS = """
import json, sys
from reconfigure import cli
status = cli.main(sys.argv[1:])
print(json.dumps({"status": status,
                  "loaded": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def _render_in_process(scan: Path, root: Path) -> tuple[int, list[str], str]:
    full_env = {**os.environ, **ENV}
    result = subprocess.run(
        [sys.executable, "-c", RENDER_IN_PROCESS, "render", "--tier", "imap",
         "--scan-file", str(scan), "--root", str(root)],
        env=full_env, capture_output=True, text=True, timeout=60, check=False, cwd=root.parent)
    report = json.loads(result.stdout.splitlines()[-1])
    return report["status"], report["loaded"], result.stderr


def test_rendering_a_clean_scan_file_loads_no_aws_or_logging_library(tmp_path: Path) -> None:
    path = tmp_path / "scan.json"
    path.write_text(json.dumps({"Items": [item("ok", "example.com", "alice", "shop"),
                                          item("me", "example.org", "bob/carol", "x")]}))
    status, loaded, stderr = _render_in_process(path, tmp_path / "out")
    assert status == 0, stderr
    assert (tmp_path / "out/etc/mail/virtusertable").read_text() == (
        "ok@shop.example.com\talice\nme@x.example.org\tbob_carol\n")
    assert "jinja2" in loaded  # the listing is real: the renderer's own library is there
    assert [name for name in HEAVY if name in loaded] == []


def test_a_skipped_row_still_logs_through_structlog(tmp_path: Path) -> None:
    """structlog is loaded on first use: the warning keeps its JSON shape."""
    path = tmp_path / "scan.json"
    path.write_text(json.dumps({"Items": [item("ok", "example.com", "alice"),
                                          item("bad guy", "example.com", "alice")]}))
    status, loaded, stderr = _render_in_process(path, tmp_path / "out")
    assert status == 0, stderr
    assert "structlog" in loaded and "boto3" not in loaded
    (warning,) = [json.loads(line) for line in stderr.splitlines()]
    assert (warning["event"], warning["address"], warning["level"], warning["tier"]) == (
        "row skipped", "bad guy@example.com", "warning", "imap")
