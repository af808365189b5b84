"""deploy/ hangs together: the systemd units, the compose file and the Kubernetes manifests
stop slower than the grace period, probe the right endpoints and mount files that exist; the
rules and the dashboard use only jobfleet's metric names. (That they call only real commands
and flags is tests/test_deploy_cli.py; that /metrics exposes every name, test_deploy_metrics.py.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from jobfleet.settings import Settings, setting_names
from tests.conftest import ROOT
from tests.deploy_files import (
    COMPOSE,
    DASHBOARD,
    DEPLOY,
    KUBERNETES,
    command_lines,
    compose,
    dashboard_expressions,
    is_jobfleet_image,
    kubernetes_documents,
    pod_containers,
    used_metric_names,
)

GRACE = Settings().grace_seconds

# The metrics jobfleet exposes (common/metrics.py): the only names deploy/ may use.
METRICS = {
    *(
        f"jobfleet_{name}"
        for name in (
            "jobs_enqueued_total",
            "jobs_started_total",
            "jobs_succeeded_total",
            "jobs_failed_total",
            "jobs_retried_total",
            "jobs_dead_total",
            "jobs_cancelled_total",
            "jobs_lost_total",
            "job_progress_updates_total",
            "job_duration_seconds",
            "job_wait_seconds",
            "queue_depth",
            "queue_oldest_ready_age_seconds",
            "node_heartbeat_age_seconds",
            "workers",
            "workers_busy",
            "leader",
            "child_crashes_total",
            "child_restarts_total",
            "late_completions_total",
            "lease_renewals_total",
            "database_errors_total",
            "claim_batch_size",
            "http_requests_total",
            "http_request_duration_seconds",
            "rate_limited_total",
            "limit_holds_total",
            "queue_paused",
        )
    )
}


def seconds(text: str) -> float:
    """A compose duration such as 45s, 1m30s."""
    parts = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", text)
    assert parts and text, text
    return int(parts[1] or 0) * 60 + int(parts[2] or 0)


def test_supervisor_unit_outwaits_the_grace_period() -> None:
    unit = (DEPLOY / "systemd" / "jobfleet-supervisor.service").read_text()
    assert "KillSignal=SIGTERM" in unit
    assert re.search(r"^Restart=(always|on-failure)$", unit, re.M)
    assert "Requires=jobfleet-migrate.service" in unit
    assert "After=network-online.target jobfleet-migrate.service" in unit
    stop = int(re.search(r"TimeoutStopSec=(\d+)", unit)[1])  # type: ignore[index]
    assert stop > GRACE


def test_env_example_uses_real_settings() -> None:
    example = (DEPLOY / "systemd" / "jobfleet.env.example").read_text()
    names = set(setting_names())
    for line in example.splitlines():
        if line.startswith("JOBFLEET_") and not line.startswith("JOBFLEET_HANDLERS"):
            field = line.split("=", 1)[0].removeprefix("JOBFLEET_").lower()
            assert field in names, line


def test_compose_runs_three_nodes_after_migrations() -> None:
    services = compose()["services"]
    assert {"postgres", "migrate", "api", "node", "prometheus", "grafana"} <= set(services)
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    supervisors = {n: s for n, s in services.items() if s.get("command", [None])[0] == "supervisor"}
    replicas = sum(s.get("deploy", {}).get("replicas", 1) for s in supervisors.values())
    assert replicas == 3
    # The HTTP API runs on exactly one node; every node serves /metrics.
    assert [n for n, s in supervisors.items() if "--http-port" in s["command"]] == ["api"]
    assert all({"--http-port", "--metrics-port"} & set(s["command"]) for s in supervisors.values())
    # A scalable service cannot pin a node name: two replicas would claim the same one.
    assert "--node-name" not in services["node"]["command"]
    for name, service in supervisors.items():
        depends = service["depends_on"]["migrate"]["condition"]
        assert depends == "service_completed_successfully", name
        assert service["stop_signal"] == "SIGTERM"
        assert seconds(service["stop_grace_period"]) > GRACE, name
        env = service["environment"]
        assert env["JOBFLEET_DATABASE_URL"].startswith("postgresql://"), name
        assert set(env) <= {f"JOBFLEET_{f.upper()}" for f in setting_names()}, name


def test_compose_mounts_and_builds_what_exists() -> None:
    base = COMPOSE.parent
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (base / source).resolve().exists(), f"{name}: {volume}"
        if "build" in service:
            assert (base / service["build"]["context"] / "Dockerfile").resolve().is_file()
            assert is_jobfleet_image(service["image"])


def test_prometheus_in_compose_scrapes_every_node_and_loads_the_rules() -> None:
    import yaml

    config = yaml.safe_load((COMPOSE.parent / "prometheus.yml").read_text())
    services = compose()["services"]
    mounts = dict(v.split(":")[:2] for v in services["prometheus"]["volumes"])
    # The rule file's path relative to the config resolves to the same file inside the
    # container as in the repository.
    config_in_container = Path(mounts["./prometheus.yml"])
    for rule in config["rule_files"]:
        assert (COMPOSE.parent / rule).resolve() == (DEPLOY / "prometheus" / "alerts.yml")
        inside = (config_in_container.parent / rule).resolve()
        assert str(inside) == mounts["../prometheus/alerts.yml"]
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    [dns] = jobs["jobfleet-nodes"]["dns_sd_configs"]
    assert dns["names"] == ["node"]
    assert f"--metrics-port {dns['port']}" in " ".join(services["node"]["command"])
    [static] = jobs["jobfleet-api"]["static_configs"]
    port = services["api"]["command"][services["api"]["command"].index("--http-port") + 1]
    assert static["targets"] == [f"api:{port}"]


def test_grafana_is_provisioned_with_the_dashboard() -> None:
    import yaml

    grafana = compose()["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    provisioning = DEPLOY / "grafana" / "provisioning"
    [source] = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    [provider] = yaml.safe_load((provisioning / "dashboards" / "jobfleet.yml").read_text())[
        "providers"
    ]
    assert provider["options"]["path"] == mounts["../grafana/dashboards"]
    assert source["url"] == "http://prometheus:9090"
    board = json.loads(DASHBOARD.read_text())
    uids = {t["datasource"]["uid"] for p in board["panels"] for t in p.get("targets", [])}
    assert uids == {source["uid"]}


def test_dashboard_shows_what_issue_8_asks_for() -> None:
    exprs = "\n".join(dashboard_expressions())
    for quantile in ("0.5", "0.95", "0.99"):
        assert (
            f"histogram_quantile({quantile}, sum by (le, type) (rate(jobfleet_job_duration" in exprs
        )
        assert f"histogram_quantile({quantile}, sum by (le, type) (rate(jobfleet_job_wait" in exprs
    for needed in (
        "sum by (type) (rate(jobfleet_jobs_succeeded_total",
        "jobfleet_queue_depth",
        "jobfleet_queue_oldest_ready_age_seconds",
        "sum by (node) (jobfleet_workers_busy",
        "jobfleet_child_crashes_total",
        "jobfleet_jobs_retried_total",
        "jobfleet_jobs_dead_total",
        "jobfleet_jobs_lost_total",
    ):
        assert needed in exprs, needed


def test_dashboard_shows_flow_control() -> None:
    """Issue 19: the claims a limit held back, by type and limit, and the paused queues."""
    exprs = "\n".join(dashboard_expressions())
    assert "sum by (type, limit) (rate(jobfleet_limit_holds_total" in exprs
    assert "max by (queue) (jobfleet_queue_paused" in exprs


def test_rules_and_dashboard_use_only_jobfleet_metrics() -> None:
    used = used_metric_names()
    assert len(used) > 15
    assert used <= METRICS, used - METRICS


def test_kubernetes_supervisor_drains_and_probes() -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for d in kubernetes_documents()}
    deployment = docs["Deployment", "jobfleet-supervisor"]
    settings = docs["ConfigMap", "jobfleet-settings"]["data"]
    grace = float(settings.get("JOBFLEET_GRACE_SECONDS", GRACE))
    pod = deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > grace
    assert deployment["spec"]["replicas"] >= 2
    [container] = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] in ports
    metrics_port = container["args"][container["args"].index("--metrics-port") + 1]
    assert ports["metrics"] == int(metrics_port)
    # Every pod is its own node, named after the pod.
    [name_env] = [e for e in container["env"] if e["name"] == "JOBFLEET_NODE_NAME"]
    assert name_env["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    service = docs["Service", "jobfleet-metrics"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    job = docs["Job", "jobfleet-migrate"]
    assert [c["args"] for c in pod_containers(job)] == [["migrate"]]


def test_kustomization_lists_every_manifest() -> None:
    import yaml

    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    present = {p.name for p in KUBERNETES.glob("*.yaml")} - {
        "kustomization.yaml",
        "secret.example.yaml",  # holds a placeholder password: created by hand instead
    }
    assert listed == present


def test_every_jobfleet_container_and_unit_runs_a_command() -> None:
    where = {w: argv for w, argv in command_lines()}
    assert len(where) >= 8
    assert all(argv and not argv[0].startswith("-") for argv in where.values()), where


def test_dockerfile_builds_a_slim_non_root_image() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    froms = re.findall(r"^FROM (\S+)", dockerfile, re.M)
    assert froms and all(f.endswith("-slim") or f.split(":")[1].endswith("slim") for f in froms)
    assert re.search(r"^USER (?!root|0\b)\S+", dockerfile, re.M)
    assert 'ENTRYPOINT ["jobfleet"]' in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".jobfleet", ".git"} <= set(ignored)
