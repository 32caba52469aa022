"""Prometheus's own checks of deploy/prometheus, with Debian's `promtool`: the alert rules load,
the config loads (its in-container paths pointed at files here), and the rules' unit tests in
alerts_test.yml pass: every alert fires on the series that should fire it, once its `for:` has
passed, with its labels and annotations, and stays quiet on healthy or brief ones."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULE_TESTS = Path(__file__).with_name("alerts_test.yml")
PROMTOOL = os.environ.get("SIZZLE_PROMTOOL", "/usr/bin/promtool")

needs_promtool = pytest.mark.skipif(
    not shutil.which(PROMTOOL) and not os.environ.get("SIZZLE_REQUIRE_PROMTOOL"),
    reason=f"needs Debian's promtool at {PROMTOOL} (.ci/run installs it)",
)


def promtool(*args: str | Path, cwd: Path = ROOT) -> str:
    """Run promtool; its output, or a failure that shows it."""
    assert shutil.which(PROMTOOL), f"no promtool at {PROMTOOL}: apt-get install prometheus"
    done = subprocess.run(
        [PROMTOOL, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"promtool {' '.join(map(str, args))} failed:\n{output}"
    return output


def alert_names() -> set[str]:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return {rule["alert"] for group in rules["groups"] for rule in group["rules"]}


@needs_promtool
def test_promtool_accepts_the_alert_rules() -> None:
    output = promtool("check", "rules", PROMETHEUS / "alerts.yml")
    assert f"SUCCESS: {len(alert_names())} rules found" in output


def credentials_files(node: Any) -> Iterator[dict[str, Any]]:
    """Every mapping with a `credentials_file`, anywhere in the config."""
    if isinstance(node, dict):
        if "credentials_file" in node:
            yield node
        for value in node.values():
            yield from credentials_files(value)
    elif isinstance(node, list):
        for value in node:
            yield from credentials_files(value)


@needs_promtool
def test_promtool_accepts_the_prometheus_config(tmp_path: Path) -> None:
    """The config names files inside the container (/etc/prometheus, /run/sizzle), which
    promtool opens: here they are copies (the rules) and a dummy (the metrics token)."""
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    rules = tmp_path / "alerts.yml"
    shutil.copy(PROMETHEUS / "alerts.yml", rules)
    assert [Path(path).name for path in config["rule_files"]] == ["alerts.yml"]
    config["rule_files"] = [str(rules)]
    token = tmp_path / "metrics_token"
    token.write_text("not-the-real-token\n")
    holders = list(credentials_files(config))
    assert holders, "the API replicas' scrape sends the metrics token from a file"
    for holder in holders:
        holder["credentials_file"] = str(token)
    checked = tmp_path / "prometheus.yml"
    checked.write_text(yaml.safe_dump(config, sort_keys=False))

    output = promtool("check", "config", checked)
    assert f"SUCCESS: {checked} is valid prometheus config file syntax" in output
    assert f"SUCCESS: {len(alert_names())} rules found" in output


def test_the_rule_tests_fire_and_spare_every_alert() -> None:
    """Each alert of alerts.yml has a case where it fires and one where it must not."""
    cases = yaml.safe_load(RULE_TESTS.read_text())
    fired: set[str] = set()
    spared: set[str] = set()
    for test in cases["tests"]:
        for case in test["alert_rule_test"]:
            (fired if case.get("exp_alerts") else spared).add(case["alertname"])
    assert fired == alert_names()
    assert spared == alert_names()


@needs_promtool
def test_every_alert_passes_its_unit_tests(tmp_path: Path) -> None:
    """alerts_test.yml names `alerts.yml` beside it: both are copied to a directory of their
    own, so it reads the deployed rules wherever the tests run."""
    shutil.copy(PROMETHEUS / "alerts.yml", tmp_path / "alerts.yml")
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    assert yaml.safe_load(RULE_TESTS.read_text())["rule_files"] == ["alerts.yml"]

    output = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert "SUCCESS" in output
