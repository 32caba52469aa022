"""A real Prometheus (Debian's) with deploy/'s own config and rules, scraping a real
`sizzle serve --no-jobs` and `sizzle worker --metrics-port` on loopback: both targets are up
(the replica through the metrics token), Sizzle's figures are in Prometheus, and every alert
rule evaluates without error against them.

Only the targets, the token file, the rules' path and the intervals differ from what
deploy/prometheus/prometheus.yml says: compose's DNS names become the two local ports."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from sizzle.db.database import Database
from tests.deploy.test_prometheus_rules import PROMETHEUS, alert_names, credentials_files
from tests.processes import SizzleProcesses, _free_port

PROMETHEUS_BINARY = os.environ.get("SIZZLE_PROMETHEUS", "/usr/bin/prometheus")
METRICS_TOKEN = "a-metrics-token-for-this-test"
WAIT_SECONDS = 30

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not shutil.which(PROMETHEUS_BINARY) and not os.environ.get("SIZZLE_REQUIRE_PROMTOOL"),
        reason=f"needs Debian's prometheus at {PROMETHEUS_BINARY} (.ci/run installs it)",
    ),
]


def _config(tmp_path: Path, *, api_port: int, worker_port: int) -> Path:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    rules = tmp_path / "alerts.yml"
    shutil.copy(PROMETHEUS / "alerts.yml", rules)
    config["rule_files"] = [str(rules)]
    token = tmp_path / "metrics_token"
    token.write_text(METRICS_TOKEN + "\n")
    for holder in credentials_files(config):
        holder["credentials_file"] = str(token)
    targets = {"sizzle-api": api_port, "sizzle-worker": worker_port}
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(targets) <= set(jobs), "deploy's Prometheus scrapes the replicas and the worker"
    for name, port in targets.items():
        job = jobs[name]
        assert "dns_sd_configs" in job
        del job["dns_sd_configs"]
        job["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
    del jobs["prometheus"]  # its own port is not 9090 here
    config["scrape_configs"] = list(jobs.values())
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


async def _query(client: httpx.AsyncClient, promql: str) -> list[dict[str, Any]]:
    answer = await client.get("/api/v1/query", params={"query": promql})
    assert answer.status_code == 200, answer.text
    return list(answer.json()["data"]["result"])


async def test_prometheus_scrapes_sizzle_and_evaluates_every_rule(
    tmp_path: Path, db: Database, database_url: str
) -> None:
    with SizzleProcesses(tmp_path, database_url, SIZZLE_METRICS_TOKEN=METRICS_TOKEN) as sizzle:
        sizzle.wait_seconds = WAIT_SECONDS
        api_url = await sizzle.serve("api", "--no-jobs")
        worker_port = _free_port()
        sizzle.start("worker", "worker", "--metrics-port", str(worker_port))
        config = _config(tmp_path, api_port=int(api_url.rsplit(":", 1)[1]), worker_port=worker_port)
        prometheus_port = _free_port()
        with (tmp_path / "prometheus.log").open("wb") as log:
            server = subprocess.Popen(
                [
                    PROMETHEUS_BINARY,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'data'}",
                    f"--web.listen-address=127.0.0.1:{prometheus_port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{prometheus_port}", timeout=5
            ) as client:

                async def scraped() -> bool:
                    assert server.poll() is None, (tmp_path / "prometheus.log").read_text()
                    try:
                        ready = await client.get("/-/ready")
                    except httpx.TransportError:
                        return False
                    if ready.status_code != 200:
                        return False  # Prometheus answers 503 until its storage is open
                    up = await _query(client, "up")
                    return {(r["metric"]["job"], r["value"][1]) for r in up} == {
                        ("sizzle-api", "1"),
                        ("sizzle-worker", "1"),
                    }

                await sizzle.until(scraped, "Prometheus to scrape the replica and the worker")

                # The database's figures come from the replica; the breakers from both.
                stuck = await _query(client, "sizzle_sessions_stuck_provisioning")
                assert [r["metric"]["job"] for r in stuck] == ["sizzle-api"]
                assert stuck[0]["value"][1] == "0"
                providers = await _query(client, 'sizzle_provider_up{provider="demo"}')
                assert {r["metric"]["job"] for r in providers} == {"sizzle-api", "sizzle-worker"}

                async def evaluated() -> bool:
                    groups = (await client.get("/api/v1/rules")).json()["data"]["groups"]
                    rules = [rule for group in groups for rule in group["rules"]]
                    if not rules or any(
                        rule.get("lastEvaluation", "").startswith("0001") for rule in rules
                    ):
                        return False
                    assert {rule["name"] for rule in rules} == alert_names()
                    broken = {
                        rule["name"]: rule.get("lastError")
                        for rule in rules
                        if rule["health"] != "ok"
                    }
                    assert not broken, broken
                    return True

                await sizzle.until(evaluated, "Prometheus to evaluate every rule")
        finally:
            server.terminate()
            server.wait(timeout=10)
