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
