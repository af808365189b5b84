"""The `jobfleet` command's settings and usage errors: misspelt variables named (once), a data
dir that cannot be made, a usage error pointing at the right help."""

from __future__ import annotations

from tests.conftest import Cli


def test_a_misspelled_setting_is_named_with_a_guess(cli: Cli) -> None:
    result = cli("status", env={"JOBFLEET_LEASE_SECOND": "5"})
    assert result.returncode == 0
    assert (
        "JOBFLEET_LEASE_SECOND is not a setting and is ignored "
        "(did you mean JOBFLEET_LEASE_SECONDS?)" in result.stderr
    )


def test_a_data_dir_that_cannot_be_made_is_a_setting_error(cli: Cli) -> None:
    result = cli("status", env={"JOBFLEET_DATABASE_URL": "", "JOBFLEET_DATA_DIR": "/proc/nope"})
    assert result.returncode == 2
    assert result.stderr.startswith("jobfleet: bad setting: JOBFLEET_DATA_DIR='/proc/nope'")
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_usage_error_points_at_the_help_of_the_command_in_use(cli: Cli) -> None:
    wrong_flag = cli("enqueue", "echo", "--bogus")
    assert wrong_flag.returncode == 2
    assert wrong_flag.stderr.strip().endswith("(see jobfleet enqueue --help)")
    nested = cli("jobs", "show", "1", "--bogus")
    assert nested.stderr.strip().endswith("(see jobfleet jobs show --help)")
    unknown = cli("nope")
    assert unknown.stderr.strip().endswith("(see jobfleet --help)")


def test_a_misspelt_setting_is_warned_about_once(cli: Cli) -> None:
    result = cli("status", env={"JOBFLEET_LEASE_SECOND": "10"})
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "JOBFLEET_LEASE_SECOND " in line]
    assert len(warnings) == 1 and "did you mean JOBFLEET_LEASE_SECONDS?" in warnings[0], warnings


def test_every_jobfleet_variable_the_code_reads_is_a_setting_or_known_not_to_be() -> None:
    """A variable read directly (the bench's switches) must not draw the misspelling warning."""
    import re
    from pathlib import Path

    from jobfleet.settings import NOT_SETTINGS, setting_names

    known = {f"JOBFLEET_{name.upper()}" for name in setting_names()} | NOT_SETTINGS
    root = Path(__file__).resolve().parent.parent
    read = {
        name
        for folder in ("common", "supervisor", "worker")
        for path in (root / folder).rglob("*.py")
        # (a name built in an f-string, JOBFLEET_MAX_{...}_BYTES, is not one)
        for name in re.findall(r"JOBFLEET_[A-Z][A-Z_]*[A-Z](?![_{A-Z])", path.read_text())
    }
    assert read, "no variable found: the scan is broken"
    assert sorted(read - known) == []
