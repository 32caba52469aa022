"""The deployment kit (deploy/): every metric its alert rules and dashboard read is one Sizzle
really exports, with the labels it really has; docker-compose.yml, Prometheus, Grafana and
nginx agree on service names, paths and ports; third-party images are pinned."""

from __future__ import annotations

import ipaddress
import json
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from sizzle.api.app import create_app
from sizzle.clock import FakeClock
from sizzle.db.database import Database
from sizzle.db.models import DemoInstance
from sizzle.domain.lifecycle import SessionStatus
from sizzle.domain.tiers import TIERS
from sizzle.metrics import Metrics
from sizzle.services.breaker import BreakerState
from sizzle.settings import Settings
from sizzle.state import AppState
from tests.helpers import launch_active_session, log_in, make_user, run_for

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
API_REPLICAS = ("api-1", "api-2")
REQUIRED_SERVICES = {"postgres", "redis", "migrate", *API_REPLICAS, "worker", "proxy"} | {
    "prometheus",
    "grafana",
}
# Prometheus's own series about each target: the only non-Sizzle metric the kit may read
FOREIGN_METRICS = {"up": frozenset({"job", "instance"})}
# labels Prometheus adds to every series it scrapes
TARGET_LABELS = frozenset({"job", "instance"})
# label values the code enumerates, checked where a rule or panel filters on them
KNOWN_VALUES = {
    ("sizzle_provider_breaker_state", "state"): {s.value for s in BreakerState},
    ("sizzle_sessions", "status"): {s.value for s in SessionStatus},
    ("sizzle_sessions", "tier"): set(TIERS),
}
HISTOGRAM_AND_COUNTER_SUFFIXES = ("_total", "_created", "_bucket", "_count", "_sum")
# PromQL functions meant for series that only go up (a fall reads as a reset), and for gauges
COUNTER_FUNCTIONS = frozenset({"rate", "irate", "increase", "resets"})
GAUGE_FUNCTIONS = frozenset({"delta", "idelta", "deriv", "predict_linear"})
COUNTING_TYPES = frozenset({"counter", "histogram", "summary"})


# --- reading the files -------------------------------------------------------------------


def load_yaml(relative: str) -> Any:
    return yaml.safe_load((DEPLOY / relative).read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml("docker-compose.yml")


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def prometheus() -> dict[str, Any]:
    return load_yaml("prometheus/prometheus.yml")


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    return [
        rule for group in load_yaml("prometheus/alerts.yml")["groups"] for rule in group["rules"]
    ]


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads((DEPLOY / "grafana/dashboards/sizzle.json").read_text())


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def command_of(service: dict[str, Any]) -> str:
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else str(command)


def interpolated(value: str) -> str:
    """A compose value with each `${VAR...}` made a plain placeholder (Docker is not here)."""
    return re.sub(r"\$\{[^}]*\}", "placeholder", value)


def host_path(service: dict[str, Any], container_path: str) -> Path | None:
    """Where `container_path` lies in deploy/, through one of the service's bind mounts."""
    wanted = PurePosixPath(container_path)
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if not source.startswith("."):
            continue  # a named volume
        if wanted == PurePosixPath(target) or PurePosixPath(target) in wanted.parents:
            return (DEPLOY / source / wanted.relative_to(target)).resolve()
    return None


def scrape_hosts(job: dict[str, Any]) -> list[tuple[str, int]]:
    """(host, port) of each target of a scrape job, static or found by DNS."""
    found = []
    for static in job.get("static_configs", []):
        for target in static["targets"]:
            host, port = target.rsplit(":", 1)
            found.append((host, int(port)))
    for dns in job.get("dns_sd_configs", []):
        found.extend((name, int(dns["port"])) for name in dns["names"])
    return found


# --- PromQL, read well enough ------------------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_RANGE = re.compile(r"\[[^\]]*\]")  # [5m], [$__rate_interval], [1h:1m]
_SELECTOR = re.compile(r"([A-Za-z_:][\w:]*)?\s*\{([^}]*)\}")
_MATCHER = re.compile(r'\s*([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"(\d+)"\s*,?')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_WORD = re.compile(r"(?<![\w.$])[A-Za-z_:][\w:]*")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
_RANGE_CALL = re.compile(r"\b(\w+)\s*\(\s*([A-Za-z_:][\w:]*)\s*(?:\{[^}]*\})?\s*\[")


@dataclass
class Selector:
    metric: str
    matchers: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass
class Query:
    selectors: list[Selector]
    grouping: set[str]


def parse_promql(expr: str) -> Query:
    """The metrics an expression selects, their label matchers, and its grouping labels."""
    strings: list[str] = []

    def keep_string(match: re.Match[str]) -> str:
        strings.append(match.group(0)[1:-1])
        return f'"{len(strings) - 1}"'

    text = _RANGE.sub(" ", _STRING.sub(keep_string, expr))
    selectors: list[Selector] = []

    def selector(match: re.Match[str]) -> str:
        body = match.group(2)
        assert not _MATCHER.sub("", body).strip(), f"cannot read the matchers {{{body}}}"
        matchers = [(label, op, strings[int(i)]) for label, op, i in _MATCHER.findall(body)]
        selectors.append(Selector(match.group(1) or "", matchers))
        return " "

    text = _SELECTOR.sub(selector, text)
    grouping: set[str] = set()
    for labels in _GROUPING.findall(text):
        grouping.update(label.strip() for label in labels.split(",") if label.strip())
    text = _GROUPING.sub(" ", text)
    text = re.sub(r'"\d+"|\$\w+', " ", text)  # string arguments, Grafana variables
    for match in _WORD.finditer(text):
        is_function = text[match.end() :].lstrip().startswith("(")
        if match.group(0).lower() not in _KEYWORDS and not is_function:
            selectors.append(Selector(match.group(0)))
    return Query(selectors, grouping)


def test_the_promql_reader_finds_metrics_matchers_and_grouping() -> None:
    query = parse_promql(
        "histogram_quantile(0.95, sum by (le, route) (rate(sizzle_http_request_seconds_bucket"
        '{route!~".*/events", status=~"5.."}[$__rate_interval]))) / 1e6 > bool 2'
        ' or absent(up{job="sizzle-worker"}) * on(instance) sizzle_sessions offset 5m'
    )
    assert [(s.metric, s.matchers) for s in query.selectors] == [
        (
            "sizzle_http_request_seconds_bucket",
            [("route", "!~", ".*/events"), ("status", "=~", "5..")],
        ),
        ("up", [("job", "=", "sizzle-worker")]),
        ("sizzle_sessions", []),
    ]
    assert query.grouping == {"le", "route", "instance"}


def misused_functions(expr: str, types: dict[str, str]) -> list[str]:
    """Counter functions over gauges, and gauge functions over counters, in one expression."""
    found = []
    for function, series in _RANGE_CALL.findall(expr):
        kind = types.get(series)
        if function in COUNTER_FUNCTIONS and kind not in COUNTING_TYPES:
            found.append(f"{function}() of {series}, a {kind}: a fall would read as a reset")
        if function in GAUGE_FUNCTIONS and kind in COUNTING_TYPES:
            found.append(f"{function}() of {series}, a {kind}: use increase() or rate()")
    return found


def test_counter_functions_are_kept_to_counters_and_gauge_functions_to_gauges() -> None:
    types = {"sizzle_revenue_net_micro_usd": "gauge", "sizzle_minutes_charged_total": "counter"}
    assert misused_functions("max(rate(sizzle_revenue_net_micro_usd[5m]))", types)
    assert misused_functions('delta(sizzle_minutes_charged_total{job="x"}[1h])', types)
    assert not misused_functions(
        "deriv(sizzle_revenue_net_micro_usd[5m]) + increase(sizzle_minutes_charged_total[1h])",
        types,
    )


# --- what Sizzle exports -----------------------------------------------------------------


@dataclass
class Exported:
    """What Sizzle's /metrics serves, and what a worker's metrics port serves."""

    labels: dict[str, set[str]]  # series name -> its label names
    values: dict[tuple[str, str], set[str]]  # (series, label) -> values seen
    types: dict[str, str]  # series name -> its family's type (counter, gauge, histogram)
    worker_families: set[str]


def family_of(series: str, families: set[str]) -> str | None:
    for family in families:
        if series == family or (
            series.startswith(family) and series[len(family) :] in HISTOGRAM_AND_COUNTER_SUFFIXES
        ):
            return family
    return None


async def plant_orphan(state: AppState) -> None:
    """A `sizzle-` instance at the demo provider that no session owns."""
    demo = state.providers["demo"]
    (offer,) = await demo.offers(TIERS["starter"])
    external_id = await demo.provision(offer, session_id="ignored", model=None)
    async with state.db.transaction() as tx:
        instance = await tx.get(DemoInstance, external_id)
        assert instance is not None
        instance.name = "sizzle-nosuchsession"


async def exported_by_sizzle(
    client: httpx.AsyncClient, state: AppState, db: Database, clock: FakeClock
) -> Exported:
    """Give every metric of `Metrics()` a value (a session launched and metered, an orphan
    destroyed, HTTP requests), then read GET /metrics as Prometheus would."""
    auth = await log_in(client, email=(await make_user(db, now=clock.now(), credit_usd="5")).email)
    await launch_active_session(client, state, clock, auth=auth)
    await run_for(state, clock, seconds=60)
    await plant_orphan(state)
    assert (await state.jobs.reconcile_now()).orphans_destroyed
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text

    labels: dict[str, set[str]] = {}
    values: dict[tuple[str, str], set[str]] = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
            types[sample.name] = family.type
            for label, value in sample.labels.items():
                values.setdefault((sample.name, label), set()).add(value)
    declared = {family.name for family in Metrics().registry.collect()}
    unseen = {name for name in declared if not any(family_of(s, {name}) for s in labels)}
    assert not unseen, f"the scrape shows no sample of {unseen}: give them a value above"
    # what `sizzle worker --metrics-port` serves, built as the worker builds it
    served = Metrics().worker_registry(state.orchestrator, clock=clock)
    worker = {family.name for family in served.collect()}
    return Exported(labels, values, types, worker)


def problems_of(expr: str, exported: Exported, jobs: set[str]) -> list[str]:
    """What in one expression Sizzle does not export: metrics, labels, label values."""
    query = parse_promql(expr)
    found = misused_functions(expr, exported.types)
    known_labels: set[str] = set(TARGET_LABELS)
    for selector in query.selectors:
        metric = selector.metric
        if metric in FOREIGN_METRICS:
            labels = set(FOREIGN_METRICS[metric])
        elif metric in exported.labels:
            labels = exported.labels[metric] | TARGET_LABELS
        else:
            found.append(f"{metric or '(no metric name)'} is not a metric Sizzle exports")
            continue
        known_labels |= labels
        for label, op, value in selector.matchers:
            if label not in labels:
                found.append(f"{metric} has no label {label!r} (it has {sorted(labels)})")
                continue
            if op in ("=~", "!~"):
                re.compile(value)
            allowed = jobs if label == "job" else KNOWN_VALUES.get((metric, label))
            if allowed is None and op in ("=", "!="):
                allowed = exported.values.get((metric, label), set())
            wanted = value.split("|") if op in ("=~", "!~") else [value]
            if allowed is not None and re.fullmatch(r"[\w|-]+", value):
                found += [f"{metric}{{{label}}} is never {v!r}" for v in wanted if v not in allowed]
            worker_only = label == "job" and op in ("=", "=~") and wanted == ["sizzle-worker"]
            if worker_only and not family_of(metric, exported.worker_families):
                found.append(f"{metric} is not served by `sizzle worker --metrics-port`")
    for label in query.grouping - known_labels:
        found.append(f"grouping by {label!r}, a label none of its metrics has")
    return found


def scrape_jobs(prometheus: dict[str, Any]) -> set[str]:
    return {job["job_name"] for job in prometheus["scrape_configs"]}


async def test_alert_rules_read_only_what_sizzle_exports(
    client: httpx.AsyncClient,
    state: AppState,
    db: Database,
    clock: FakeClock,
    rules: list[dict[str, Any]],
    prometheus: dict[str, Any],
) -> None:
    exported = await exported_by_sizzle(client, state, db, clock)
    problems = {
        rule["alert"]: found
        for rule in rules
        if (found := problems_of(rule["expr"], exported, scrape_jobs(prometheus)))
    }
    assert not problems


async def test_dashboard_panels_read_only_what_sizzle_exports(
    client: httpx.AsyncClient,
    state: AppState,
    db: Database,
    clock: FakeClock,
    dashboard: dict[str, Any],
    prometheus: dict[str, Any],
) -> None:
    exported = await exported_by_sizzle(client, state, db, clock)
    problems = {}
    for panel in all_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            found = problems_of(target["expr"], exported, scrape_jobs(prometheus))
            query = parse_promql(target["expr"])
            labels = set().union(*(exported.labels.get(s.metric, set()) for s in query.selectors))
            legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
            found += [f"legend {{{{{x}}}}} is no label" for x in legend - labels - TARGET_LABELS]
            if found:
                problems[f"{panel['title']} / {target['refId']}"] = found
    assert not problems


# --- alert rules and dashboard, on their own --------------------------------------------


def test_every_alert_rule_says_how_long_how_bad_and_what(rules: list[dict[str, Any]]) -> None:
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]


def test_the_alerts_cover_what_an_operator_must_hear_about(rules: list[dict[str, Any]]) -> None:
    read = " ".join(rule["expr"] for rule in rules)
    for metric in (
        "sizzle_provider_up",
        "sizzle_provider_breaker_state",
        "sizzle_metering_lag_seconds",
        "sizzle_metering_pass_seconds_count",
        "sizzle_sessions_stuck_provisioning",
        "sizzle_orphan_instances_destroyed_total",
        "sizzle_reconciler_blind_rounds",
        "sizzle_http_request_seconds_count",
    ):
        assert metric in read


def test_the_dashboard_is_valid_with_unique_panel_ids(dashboard: dict[str, Any]) -> None:
    panels = list(all_panels(dashboard["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    assert dashboard["schemaVersion"] >= 36 and dashboard["uid"]
    for panel in panels:
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs)), panel["title"]


def test_the_dashboard_uses_the_provisioned_datasource(dashboard: dict[str, Any]) -> None:
    (datasource,) = load_yaml("grafana/provisioning/datasources/prometheus.yml")["datasources"]
    for panel in all_panels(dashboard["panels"]):
        for thing in [panel, *panel.get("targets", [])]:
            if "datasource" in thing:
                assert thing["datasource"]["uid"] == datasource["uid"], panel["title"]


# --- docker-compose.yml ------------------------------------------------------------------


def test_compose_has_every_service(services: dict[str, dict[str, Any]]) -> None:
    assert REQUIRED_SERVICES <= set(services)


def test_every_image_is_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        image = service["image"]
        assert ":" in image, f"{name}: {image} has no tag"
        tag = image.rsplit(":", 1)[1]
        assert "latest" not in tag, f"{name}: {image}"
        if "build" not in service:  # a third party's image: an explicit version
            assert re.match(r"v?\d+\.\d+", tag), f"{name}: {image} is not a version"


def test_sizzle_image_tag_defaults_to_the_project_version(
    services: dict[str, dict[str, Any]],
) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    built = {service["image"] for service in services.values() if "build" in service}
    assert built == {f"sizzle:${{IMAGE_TAG:-{version}}}"}
    assert (DEPLOY / services["api-1"]["build"]["dockerfile"].removeprefix("deploy/")).exists()


def test_the_sizzle_processes_run_the_right_commands(
    services: dict[str, dict[str, Any]],
) -> None:
    assert command_of(services["migrate"]) == "sizzle db upgrade"
    for name in API_REPLICAS:
        command = command_of(services[name])
        assert command.startswith("sizzle serve --no-jobs") and "--host 0.0.0.0" in command
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )
    assert re.fullmatch(r"sizzle worker --metrics-port \d+", command_of(services["worker"]))
    assert services["worker"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )


def test_sizzle_reaches_postgres_through_asyncpg_and_redis(
    services: dict[str, dict[str, Any]],
) -> None:
    postgres = services["postgres"]["environment"]
    for name in ("migrate", *API_REPLICAS, "worker"):
        environment = services[name]["environment"]
        url = make_url(interpolated(environment["SIZZLE_DATABASE_URL"]))
        assert url.drivername == "postgresql+asyncpg"
        assert (url.host, url.port, url.database) == ("postgres", 5432, postgres["POSTGRES_DB"])
        assert url.username == postgres["POSTGRES_USER"]
        assert environment["SIZZLE_REDIS_URL"].startswith("redis://redis:6379/")
        assert set(environment) <= {f"SIZZLE_{f.upper()}" for f in Settings.model_fields} | {
            "FORWARDED_ALLOW_IPS"
        }


def test_env_example_documents_every_variable(compose: dict[str, Any]) -> None:
    text = (DEPLOY / "docker-compose.yml").read_text()
    used = set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)", text))
    lines = (DEPLOY / ".env.example").read_text().splitlines()
    documented: dict[str, int] = {}
    for number, line in enumerate(lines):
        if match := re.fullmatch(r"#? ?([A-Z][A-Z0-9_]*)=.*", line):
            documented[match.group(1)] = number
    assert used <= set(documented), used - set(documented)
    settings = {f"SIZZLE_{name.upper()}" for name in Settings.model_fields}
    for name, number in documented.items():
        assert not name.startswith("SIZZLE_") or name in settings, f"{name} is no setting"
        above = lines[number - 1] if number else ""
        assert above.startswith("#") and not re.fullmatch(r"# ?[A-Z0-9_]+=.*", above), name


# --- Prometheus --------------------------------------------------------------------------


def test_prometheus_loads_its_config_and_the_alert_rules(
    services: dict[str, dict[str, Any]], prometheus: dict[str, Any]
) -> None:
    service = services["prometheus"]
    config = re.search(r"--config\.file=(\S+)", command_of(service))
    assert config and host_path(service, config.group(1)) == DEPLOY / "prometheus/prometheus.yml"
    loaded = {host_path(service, path) for path in prometheus["rule_files"]}
    assert loaded == {DEPLOY / "prometheus/alerts.yml"}


def test_prometheus_scrapes_every_sizzle_process(
    services: dict[str, dict[str, Any]], prometheus: dict[str, Any]
) -> None:
    scraped = {target: job for job in prometheus["scrape_configs"] for target in scrape_hosts(job)}
    for host, _port in scraped:
        assert host in services or host == "localhost", f"{host} is no compose service"
    for name in API_REPLICAS:
        port = int(re.search(r"--port (\d+)", command_of(services[name])).group(1))
        job = scraped[(name, port)]
        assert job.get("metrics_path", "/metrics") == "/metrics"
        # each replica wants SIZZLE_METRICS_TOKEN: Prometheus reads it from a file it writes
        token_file = job["authorization"]["credentials_file"]
        assert str(PurePosixPath(token_file).parent) in services["prometheus"]["tmpfs"]
        assert f"> {token_file}" in command_of(services["prometheus"])
    worker_port = int(command_of(services["worker"]).rsplit(" ", 1)[1])
    assert ("worker", worker_port) in scraped


# --- Grafana -----------------------------------------------------------------------------


def test_grafana_is_provisioned_from_deploy(services: dict[str, dict[str, Any]]) -> None:
    grafana = services["grafana"]
    (provider,) = load_yaml("grafana/provisioning/dashboards/sizzle.yml")["providers"]
    dashboards = host_path(grafana, provider["options"]["path"])
    assert dashboards == DEPLOY / "grafana/dashboards"
    assert (dashboards / "sizzle.json").exists()
    assert host_path(grafana, "/etc/grafana/provisioning/datasources") == (
        DEPLOY / "grafana/provisioning/datasources"
    )
    (datasource,) = load_yaml("grafana/provisioning/datasources/prometheus.yml")["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
    assert "127.0.0.1:9090:9090" in services["prometheus"]["ports"]


# --- the reverse proxy -------------------------------------------------------------------


def nginx_config() -> str:
    return (DEPLOY / "nginx/sizzle.conf").read_text()


def nginx_locations() -> dict[str, str]:
    """`location` argument -> its block's body."""
    return {
        match.group(1).strip(): match.group(2)
        for match in re.finditer(r"location\s+([^{]+)\{([^}]*)\}", nginx_config())
    }


def test_the_proxy_balances_over_every_api_replica(services: dict[str, dict[str, Any]]) -> None:
    proxy = services["proxy"]
    assert host_path(proxy, "/etc/nginx/conf.d/default.conf") == DEPLOY / "nginx/sizzle.conf"
    upstream = re.search(r"upstream\s+sizzle_api\s*\{([^}]*)\}", nginx_config())
    assert upstream
    servers = set(re.findall(r"server\s+([\w.-]+:\d+)", upstream.group(1)))
    assert servers == {f"{name}:8000" for name in API_REPLICAS}
    for body in nginx_locations().values():
        assert "proxy_pass http://sizzle_api;" in body or "return 404" in body


def route_paths(routes: list[Any]) -> Iterator[str]:
    """The path of every route of the app, through included routers."""
    for route in routes:
        if hasattr(route, "original_router"):
            yield from route_paths(route.original_router.routes)
        elif hasattr(route, "path"):
            yield route.path


def test_the_proxy_streams_events_and_chat_without_buffering(state: AppState) -> None:
    streams = [
        path.replace("{session_id}", "0f3a")
        for path in route_paths(create_app(state=state, run_jobs=False).routes)
        if path.endswith("/events") or path == "/v1/chat/completions"
    ]
    assert len(streams) == 3  # the API's and the page's session events, and chat
    for path in streams:
        bodies = [
            body
            for where, body in nginx_locations().items()
            if (where.startswith("~ ") and re.search(where[2:].strip(), path))
            or where == f"= {path}"
        ]
        assert bodies and all("proxy_buffering off;" in body for body in bodies), path


def test_the_proxy_forwards_the_client_and_the_request_id(
    services: dict[str, dict[str, Any]], compose: dict[str, Any]
) -> None:
    config = nginx_config()
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in config
    assert re.search(r"proxy_set_header X-Request-ID \$\w+;", config)
    assert "return 404" in nginx_locations()["= /metrics"]
    # uvicorn believes X-Forwarded-For only from the proxy's fixed address
    address = services["proxy"]["networks"]["default"]["ipv4_address"]
    for name in API_REPLICAS:
        assert services[name]["environment"]["FORWARDED_ALLOW_IPS"] == address
    (pool,) = compose["networks"]["default"]["ipam"]["config"]
    assert ipaddress.ip_address(address) in ipaddress.ip_network(pool["subnet"])
    assert ipaddress.ip_address(address) not in ipaddress.ip_network(pool["ip_range"])


def test_the_replicas_want_the_public_url_and_nginx_logs_no_query(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in API_REPLICAS:
        environment = services[name]["environment"]
        # compose refuses to start without it (`sizzle serve --host 0.0.0.0` would too)
        assert re.fullmatch(r"\$\{SIZZLE_PUBLIC_URL:\?[^}]+\}", environment["SIZZLE_PUBLIC_URL"])
        assert "SIZZLE_ALLOWED_HOSTS" in environment
    log_format = re.search(r"log_format\s+sizzle\s+([^;]+);", nginx_config())
    assert log_format and "$uri" in log_format.group(1)
    # $request and $request_uri carry the query, where a mailed link has its token
    assert not re.search(r"\$request(_uri)?\b", log_format.group(1))
