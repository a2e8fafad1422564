"""The monitoring kit under deploy/: Prometheus rules run through promtool, and their shape.

promtool is Debian's (package prometheus, installed by `make deps`); without it the promtool
tests skip and say so, the rest still run.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, cast

import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML, a moto dependency; no stubs installed

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
