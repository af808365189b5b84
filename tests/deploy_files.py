"""Reading deploy/: every jobfleet command line its files run, and the metric names its
Prometheus rules and Grafana dashboard use. Shared by the deploy tests."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose" / "compose.yaml"
RULES = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "jobfleet.json"
KUBERNETES = DEPLOY / "kubernetes"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))

# A metric name inside PromQL: jobfleet_ and the rest of the identifier.
_METRIC = re.compile(r"\bjobfleet_[a-z0-9_]+")
_HISTOGRAM_PARTS = ("_bucket", "_sum", "_count")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def kubernetes_documents() -> list[dict[str, Any]]:
    """Every object the manifests define (not kustomize's own file)."""
    docs = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return [d for d in docs if d["kind"] != "Kustomization"]


def pod_containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return list(spec.get("initContainers", [])) + list(spec.get("containers", []))


def is_jobfleet_image(image: str) -> bool:
    return image.split("/")[-1].split(":")[0] == "jobfleet"


def command_lines() -> Iterator[tuple[str, list[str]]]:
    """(where, argv after `jobfleet`) for every jobfleet command deploy/ runs."""
    for unit in UNITS:
        for line in unit.read_text().splitlines():
            if line.startswith("ExecStart="):
                # systemd's %H and ${VAR} become what they expand to at start.
                text = re.sub(r"\$\{\w+\}", "x", line.split("=", 1)[1].replace("%H", "host"))
                argv = shlex.split(text)
                assert argv[0].endswith("/jobfleet"), f"{unit.name}: {line}"
                yield unit.name, argv[1:]
    for name, service in compose()["services"].items():
        if is_jobfleet_image(service.get("image", "")):
            yield f"compose service {name}", list(service.get("command", []))
    for doc in kubernetes_documents():
        for container in pod_containers(doc):
            if is_jobfleet_image(container["image"]):
                argv = list(container.get("command", [])) + list(container.get("args", []))
                if argv and argv[0] == "jobfleet":
                    argv = argv[1:]
                yield f"kubernetes {doc['metadata']['name']}/{container['name']}", argv


def metric_names(promql: str) -> set[str]:
    names = set()
    for name in _METRIC.findall(promql):
        for suffix in _HISTOGRAM_PARTS:
            if name.endswith(suffix):
                name = name.removesuffix(suffix)
        names.add(name)
    return names


def rules_expressions() -> list[str]:
    rules = yaml.safe_load(RULES.read_text())
    return [r["expr"] for group in rules["groups"] for r in group["rules"]]


def dashboard_expressions() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in board["templating"]["list"]]
    return exprs


def used_metric_names() -> set[str]:
    return {n for e in rules_expressions() + dashboard_expressions() for n in metric_names(e)}


def path_in_repo(base: Path, text: str) -> Path:
    return (base / text).resolve()
