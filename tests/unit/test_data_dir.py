"""Where the embedded cluster lives when JOBFLEET_DATA_DIR is unset: per user, never the
working directory (no database)."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from jobfleet.data_dir import default_data_dir
from jobfleet.settings import load_settings


def test_root_keeps_it_where_the_service_user_can_reach_it() -> None:
    assert default_data_dir(0, {"HOME": "/root", "XDG_DATA_HOME": "/root/.xdg"}) == Path(
        "/var/lib/jobfleet"
    )


def test_a_user_keeps_it_in_xdg_data_home() -> None:
    environ = {"HOME": "/home/ann", "XDG_DATA_HOME": "/data/ann"}
    assert default_data_dir(1000, environ) == Path("/data/ann/jobfleet")


def test_without_xdg_data_home_it_is_under_home_local_share() -> None:
    assert default_data_dir(1000, {"HOME": "/home/ann"}) == Path("/home/ann/.local/share/jobfleet")
    # The XDG spec: a relative XDG_DATA_HOME is invalid and ignored.
    environ = {"HOME": "/home/ann", "XDG_DATA_HOME": "data"}
    assert default_data_dir(1000, environ) == Path("/home/ann/.local/share/jobfleet")


def test_without_home_it_is_under_the_users_home_directory() -> None:
    uid = os.getuid() or pwd.getpwnam("nobody").pw_uid
    home = pwd.getpwuid(uid).pw_dir
    assert default_data_dir(uid, {}) == Path(home) / ".local/share/jobfleet"


def test_the_setting_does_not_depend_on_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JOBFLEET_DATA_DIR", raising=False)
    seen = set()
    for folder in (tmp_path, tmp_path / "myapp", Path("/")):
        folder.mkdir(exist_ok=True)
        monkeypatch.chdir(folder)
        seen.add(load_settings().data_dir)
    assert seen == {default_data_dir()}
    assert default_data_dir().is_absolute()
    monkeypatch.setenv("JOBFLEET_DATA_DIR", str(tmp_path / "mine"))
    assert load_settings().data_dir == tmp_path / "mine"
