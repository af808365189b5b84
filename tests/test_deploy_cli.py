"""Every command line deploy/ runs (systemd units, compose services, Kubernetes containers)
parses with the real `jobfleet` parser: no command or flag that does not exist."""

from __future__ import annotations

import pytest

from jobfleet.cli.parser import build_parser
from tests.deploy_files import command_lines

COMMANDS = list(command_lines())


def test_deploy_runs_every_role() -> None:
    firsts = {argv[0] for _, argv in COMMANDS}
    assert {"migrate", "supervisor", "api"} <= firsts


@pytest.mark.parametrize(("where", "argv"), COMMANDS, ids=[w for w, _ in COMMANDS])
def test_command_and_flags_exist(where: str, argv: list[str]) -> None:
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse's way of saying "no such command or flag"
        raise AssertionError(f"{where}: `jobfleet {' '.join(argv)}` does not parse") from exc
