"""deploy/ only calls commands and flags that exist, and stops slower than the grace period."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from jobfleet.settings import Settings
from jobfleet.supervisor.cli.parser import build_parser
from tests.conftest import ROOT

UNITS = sorted((ROOT / "deploy" / "systemd").glob("*.service"))


def exec_lines(unit: Path) -> list[str]:
    return [
        ln.split("=", 1)[1] for ln in unit.read_text().splitlines() if ln.startswith("ExecStart=")
    ]


def test_units_call_existing_commands_and_flags() -> None:
    assert UNITS
    parser = build_parser()
    for unit in UNITS:
        for line in exec_lines(unit):
            argv = shlex.split(re.sub(r"\$\{\w+\}", "x", line.replace("%H", "host")))
            assert argv[0].endswith("/jobfleet")
            parser.parse_args(argv[1:])  # exits (SystemExit) on an unknown command or flag


def test_supervisor_unit_outwaits_the_grace_period() -> None:
    unit = (ROOT / "deploy" / "systemd" / "jobfleet-supervisor.service").read_text()
    assert "KillSignal=SIGTERM" in unit
    stop = int(re.search(r"TimeoutStopSec=(\d+)", unit)[1])  # type: ignore[index]
    assert stop > Settings().grace_seconds


def test_env_example_uses_real_settings() -> None:
    example = (ROOT / "deploy" / "systemd" / "jobfleet.env.example").read_text()
    names = set(Settings.model_fields)
    for line in example.splitlines():
        if line.startswith("JOBFLEET_") and not line.startswith("JOBFLEET_HANDLERS"):
            field = line.split("=", 1)[0].removeprefix("JOBFLEET_").lower()
            assert field in names, line
