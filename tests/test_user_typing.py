"""A user's `mypy --strict` on code calling the API passes after `make`: the repository's
.venv (setuptools' strict editable install) seen from a folder outside the repository, as an
application developed beside a checkout sees it. After `pip install`: test_example_app.py."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.user_typing import strict_mypy_checks


def test_a_users_strict_mypy_passes_after_make(tmp_path: Path) -> None:
    assert not tmp_path.is_relative_to(ROOT)
    strict_mypy_checks(Path(sys.executable), tmp_path)
