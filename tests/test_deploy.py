"""The monitoring kit under deploy/: Prometheus rules run through promtool, and the CloudWatch
Logs metric filters of the Terraform snippet checked against sample log lines.

promtool is Debian's (package prometheus, installed by `make deps`); without it the promtool
tests skip and say so, the rest still run.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, cast

import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML, a moto dependency; no stubs installed

from tests.support import cwlogs

REPO = Path(__file__).resolve().parent.parent
PROMETHEUS = REPO / "deploy" / "prometheus"
RULES = PROMETHEUS / "reconfigure-rules.yml"
RULE_TESTS = PROMETHEUS / "reconfigure-rules.test.yml"
SCRAPE_EXAMPLE = PROMETHEUS / "scrape-example.yml"
TIERS = ("imap", "smtp-in", "smtp-out")


def load_yaml(path: Path) -> dict[str, Any]:
    return cast(dict[str, Any], yaml.safe_load(path.read_text()))


def alerts() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(RULES)["groups"] for rule in group["rules"]
            if "alert" in rule]


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip("promtool not installed (Debian package prometheus; `make deps` installs it)")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60,
                          check=False, cwd=cwd)


def test_promtool_accepts_the_rules() -> None:
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = promtool("test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_can_fail(tmp_path: Path) -> None:
    """The unit tests notice a changed threshold: they are not vacuous."""
    rules = RULES.read_text()
    loosened = rules.replace("reconfigure_owed_reloads > 0", "reconfigure_owed_reloads > 5")
    assert loosened != rules
    (tmp_path / RULES.name).write_text(loosened)
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    result = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0
    assert "ReconfigureReloadOwed" in result.stdout + result.stderr


def test_promtool_accepts_the_scrape_example() -> None:
    result = promtool("check", "config", SCRAPE_EXAMPLE.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_labelled_and_annotated() -> None:
    found = alerts()
    assert len(found) >= 5
    for rule in found:
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        annotations = rule["annotations"]
        assert "{{ $labels.tier }}" in annotations["summary"], rule["alert"]
        assert annotations["runbook_url"].startswith("docs/runbook.md#"), rule["alert"]


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in load_yaml(RULE_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names <= firing, f"no firing case: {sorted(names - firing)}"
    assert names <= quiet, f"no quiet case: {sorted(names - quiet)}"


def test_scrape_example_labels_each_tier() -> None:
    """The relabel rule turns each tier's DNS name into its `tier` label (anchored, as in
    Prometheus), which the alerts' summaries and ReconfigureMetricsDown's job rely on."""
    [job] = load_yaml(SCRAPE_EXAMPLE)["scrape_configs"]
    assert job["job_name"] == "reconfigure"
    assert 'up{job="reconfigure"}' in RULES.read_text()
    [relabel] = job["relabel_configs"]
    names = [name for sd in job["dns_sd_configs"] for name in sd["names"]]
    assert len(names) == len(TIERS)
    for tier, name in zip(TIERS, names, strict=True):
        match = re.fullmatch(relabel["regex"], name)
        replacement = re.sub(r"\$\{?(\d+)\}?", r"\\\1", relabel.get("replacement", "$1"))
        assert match is not None and match.expand(replacement) == tier


# ── CloudWatch Logs metric filters (deploy/terraform/reconfigure-monitoring.tf) ─────────────

TERRAFORM = REPO / "deploy" / "terraform" / "reconfigure-monitoring.tf"
HCL_STRING = r'"((?:[^"\\]|\\.)*)"'


def hcl_block(text: str, header: str) -> str:
    """The body of the block that starts with `header {` (braces in strings are skipped)."""
    start = text.index(header)
    index = text.index("{", start + len(header) - 1)
    depth, quoted, escaped = 0, False, False
    for position in range(index, len(text)):
        char = text[position]
        if quoted:
            escaped = not escaped and char == "\\"
            quoted = escaped or char != '"'
        elif char == '"':
            quoted = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[index + 1:position]
    raise AssertionError(f"unterminated block {header!r}")


def hcl_unquote(raw: str) -> str:
    """An HCL string literal's text (its escapes are \\" and \\\\ here)."""
    return re.sub(r"\\(.)", r"\1", raw)


def hcl_attribute(block: str, name: str) -> str:
    match = re.search(rf"^\s*{name}\s*=\s*(.+?)\s*$", block, re.MULTILINE)
    assert match is not None, f"no {name} attribute"
    return match.group(1)


def tf_text() -> str:
    return TERRAFORM.read_text()


def tf_log_groups() -> dict[str, str]:
    block = hcl_block(tf_text(), 'variable "reconfigure_log_groups"')
    return {hcl_unquote(tier): hcl_unquote(group) for tier, group
            in re.findall(rf"^\s*{HCL_STRING}\s*=\s*{HCL_STRING}\s*$", block, re.MULTILINE)}


def tf_log_metrics() -> dict[str, dict[str, str]]:
    block = hcl_block(tf_text(), "reconfigure_log_metrics =")
    found = re.findall(rf"^\s*(\w+)\s*=\s*\{{\s*event\s*=\s*{HCL_STRING}\s*,"
                       rf"\s*value\s*=\s*{HCL_STRING}\s*\}}\s*$", block, re.MULTILINE)
    return {name: {"event": hcl_unquote(event), "value": hcl_unquote(value)}
            for name, event, value in found}


def interpolate(template: str, each_value: dict[str, str]) -> str:
    """Terraform's `${each.value.<key>}` interpolation, alone."""
    return re.sub(r"\$\{each\.value\.(\w+)\}", lambda m: each_value[m.group(1)], template)


def tf_filters() -> dict[tuple[str, str], dict[str, str]]:
    """(tier, metric) -> the filter's pattern, value and dimension as Terraform renders them
    for that instance of the for_each (only `${each.value.*}` is interpolated)."""
    resource = hcl_block(tf_text(), 'resource "aws_cloudwatch_log_metric_filter" "reconfigure"')
    assert "for_each = local.reconfigure_log_filters" in resource
    pattern = re.fullmatch(HCL_STRING, hcl_attribute(resource, "pattern"))
    assert pattern is not None
    transformation = hcl_block(resource, "metric_transformation")
    assert hcl_attribute(transformation, "name") == "each.value.metric"
    assert hcl_attribute(transformation, "value") == "each.value.value"
    dimensions = hcl_block(transformation, "dimensions =")
    tier_selector = re.fullmatch(HCL_STRING, hcl_attribute(dimensions, "Tier"))
    assert tier_selector is not None
    filters = {}
    for tier in tf_log_groups():
        for metric, spec in tf_log_metrics().items():
            each = {"tier": tier, "metric": metric, **spec}
            rendered = interpolate(hcl_unquote(pattern.group(1)), each)
            assert "${" not in rendered, rendered
            filters[(tier, metric)] = {"pattern": rendered, "value": spec["value"],
                                       "tier": hcl_unquote(tier_selector.group(1))}
    return filters


def log_line(tier: str, event: str, fields: dict[str, object] | None = None, *,
             level: str = "info", logger: str = "reconfigure") -> str:
    """One line as the daemon writes it (the fields every line has, then the event's)."""
    return json.dumps({"logger": logger, "tier": tier, "level": level, "event": event,
                       "timestamp": "2026-11-30T10:15:00.123456Z", **(fields or {})})


def sample_lines() -> dict[tuple[str, str], str]:
    """(tier, kind) -> a line; the kinds a filter may count and the ones none may."""
    lines: dict[tuple[str, str], str] = {}
    for tier in TIERS:
        cycle: dict[str, object] = {
            "trigger": "message", "rows": 1200, "changed": ["/etc/mail/virtusertable"],
            "reloads": [], "duration_ms": 412}
        lines[(tier, "done")] = log_line(tier, "cycle done", {**cycle, "skipped": 3})
        lines[(tier, "failed")] = log_line(tier, "cycle failed", {
            **cycle, "skipped": 0,
            "error": "AccessDeniedException: not authorized to perform dynamodb:Scan"},
            level="error")
        lines[(tier, "ping")] = log_line(tier, "heartbeat ping failed", {
            "kind": "success", "error": "ConnectTimeout"}, level="warning")
        lines[(tier, "row skipped")] = log_line(tier, "row skipped", {
            "address": "bad guy@example.com", "rule": "username"}, level="warning")
        # Same event and tier from another logger, and sendmail's plain text with the words.
        lines[(tier, "other logger")] = log_line(tier, "cycle done", logger="supervisor")
        lines[(tier, "plain text")] = (f"Nov 30 10:15:00 {tier} sendmail[42]: reconfigure "
                                       f'tier="{tier}" event="cycle failed"')
    return lines


# What each metric counts, by the sample kinds above.
COUNTS = {"CyclesDone": "done", "CyclesFailed": "failed", "HeartbeatPingFailures": "ping",
          "SkippedRows": "done"}


def test_terraform_snippet_covers_every_tier_and_metric() -> None:
    assert tf_log_groups() == {tier: f"/ecs/cabal-{tier}" for tier in TIERS}
    assert set(tf_log_metrics()) == set(COUNTS)
    assert len(tf_filters()) == len(TIERS) * len(COUNTS)


def test_each_filter_matches_its_line_and_no_other() -> None:
    lines = sample_lines()
    for (tier, metric), spec in tf_filters().items():
        matched = {key for key, line in lines.items() if cwlogs.matches(spec["pattern"], line)}
        assert matched == {(tier, COUNTS[metric])}, (tier, metric, spec["pattern"])


def test_each_filter_publishes_its_value_under_its_tier() -> None:
    lines = sample_lines()
    for (tier, metric), spec in tf_filters().items():
        line = lines[(tier, COUNTS[metric])]
        assert cwlogs.selected(spec["tier"], line) == tier
        expected = 3 if metric == "SkippedRows" else "1"  # the sample's skipped count
        assert cwlogs.selected(spec["value"], line) == expected, metric


def test_alarms_watch_metrics_the_filters_publish() -> None:
    text = tf_text()
    published = set(tf_log_metrics())
    watched = set(re.findall(rf"metric_name\s*=\s*{HCL_STRING}", text))
    assert watched and watched <= published, watched - published
    for name in ("reconfigure_cycles_failing", "reconfigure_silent"):
        alarm = hcl_block(text, f'resource "aws_cloudwatch_metric_alarm" "{name}"')
        assert "for_each = var.reconfigure_log_groups" in alarm
        assert "alarm_actions       = var.reconfigure_alarm_actions" in alarm
    silent = hcl_block(text, 'resource "aws_cloudwatch_metric_alarm" "reconfigure_silent"')
    assert 'treat_missing_data  = "breaching"' in silent
    assert 'metric_name         = "CyclesDone"' in silent


@pytest.mark.parametrize(("pattern", "line", "expected"), [
    ('{ $.a = "x" }', '{"a": "x"}', True),
    ('{ $.a = "x" }', '{"a": "xy"}', False),
    ('{ $.a = "x" }', '{"a": 1}', False),
    ('{ $.a = "x" }', '{"b": "x"}', False),
    ('{ $.a = "x" }', "not json", False),
    ('{ $.a = "x" }', '["x"]', False),
    ('{ $.a.b = "x y" && $.c = "z" }', '{"a": {"b": "x y"}, "c": "z"}', True),
    ('{ $.a.b = "x y" && $.c = "z" }', '{"a": {"b": "x y"}, "c": "q"}', False),
    ('{ $.a = "x && y" }', '{"a": "x && y"}', True),
    ('{ $.a = "say \\"hi\\"" }', '{"a": "say \\"hi\\""}', True),
])
def test_evaluator(pattern: str, line: str, expected: bool) -> None:
    assert cwlogs.matches(pattern, line) is expected


@pytest.mark.parametrize("pattern", [
    '$.a = "x"', '{ $.a = "x" || $.b = "y" }', '{ ($.a = "x") }', '{ $.a = x }',
    '{ $.a != "x" }', '{ $.a = "x*" }', '{ $.a = "x }', "{ }",
])
def test_evaluator_refuses_syntax_it_does_not_know(pattern: str) -> None:
    with pytest.raises(ValueError, match=r"subset|pattern|unterminated"):
        cwlogs.parse(pattern)


# ── docs/runbook.md: every alert and alarm lands on a section ───────────────────────────────

RUNBOOK = REPO / "docs" / "runbook.md"


def github_anchor(heading: str) -> str:
    """The id GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def runbook_anchors() -> set[str]:
    return {github_anchor(line.lstrip("#")) for line in RUNBOOK.read_text().splitlines()
            if re.match(r"#{1,6} ", line)}


def test_github_anchor() -> None:
    assert github_anchor(" Heartbeat missed (Healthchecks ecs-reconfigure)") == \
        "heartbeat-missed-healthchecks-ecs-reconfigure"


def test_every_alert_links_to_a_runbook_section() -> None:
    anchors = runbook_anchors()
    links = [rule["annotations"]["runbook_url"] for rule in alerts()]
    links += re.findall(r"Runbook: (docs/runbook\.md#[\w-]+)", tf_text())
    assert len(links) == len(alerts()) + 2  # the two CloudWatch alarms
    for link in links:
        path, _, anchor = link.partition("#")
        assert (REPO / path) == RUNBOOK and anchor in anchors, link


def test_runbook_names_every_alert_and_its_own_links_resolve() -> None:
    text = RUNBOOK.read_text()
    for rule in alerts():
        assert f"`{rule['alert']}`" in text, rule["alert"]
    anchors = runbook_anchors()
    internal = re.findall(r"\]\(#([^)]+)\)", text)
    assert internal
    assert set(internal) <= anchors, set(internal) - anchors
