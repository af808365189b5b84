"""What the console's browser tests share: Debian's chromium (installed as root when missing;
Playwright's own browser download is never used), a signed-in page, and the hosts the page
asked for."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

INSTALL_LOCK = Path(tempfile.gettempdir()) / "jobfleet-chromium-install.lock"
# The first browser test of a fresh machine installs chromium (a few hundred MB from Debian,
# minutes on a loaded machine): the browser tests' own limit, above the suite's 180 s.
INSTALL_TIMEOUT_SECONDS = 900
# Generous: a loaded 2-core machine runs chromium, PostgreSQL and a fleet at once.
TIMEOUT_MS = 30_000
expect.set_options(timeout=TIMEOUT_MS)  # its own default is 5 s


def chromium_program() -> str:
    """Debian's chromium, installed with apt-get first if missing (as root)."""
    found = shutil.which("chromium") or shutil.which("chromium", path="/usr/bin")
    if found:
        return found
    if os.geteuid() != 0:
        pytest.fail(
            "chromium is not installed and this test runs as an unprivileged user, so it "
            "cannot install it: run `apt-get install chromium` (Debian's package), or run the "
            "tests as root (they install it then)",
            pytrace=False,
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with INSTALL_LOCK.open("w") as lock:  # two xdist workers: one installs, one waits
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not shutil.which("chromium", path="/usr/bin"):
            # With its recommended packages (fonts among them), as the tests were written on.
            install = ["apt-get", "install", "-y", "-q", "chromium"]
            done = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:  # a fresh machine's package lists may be empty or stale
                subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
                done = subprocess.run(install, env=env, capture_output=True, text=True)
            assert done.returncode == 0, f"apt-get install chromium failed:\n{done.stderr}"
    found = shutil.which("chromium", path="/usr/bin")
    assert found, "apt-get installed chromium but no chromium program is on the PATH"
    return found


def launch(playwright: Any) -> Any:
    """Chromium through Playwright; as root it must run without its sandbox."""
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    return playwright.chromium.launch(executable_path=chromium_program(), args=args)


@dataclass
class Console:
    """A browser page on one server's console, recording every host it asks."""

    page: Any
    base: str
    hosts: set[str] = field(default_factory=set)

    def open(self, path: str) -> None:
        self.page.goto(f"{self.base}{path}")

    def sign_in(self, key: str) -> None:
        self.open("/ui")
        self.page.get_by_label("API key").fill(key)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.get_by_role("heading", name="Overview").wait_for()

    def sign_out(self) -> None:
        self.page.get_by_role("button", name="Sign out").click()
        self.page.get_by_role("button", name="Sign in").wait_for()

    def mark(self) -> None:
        """Mark the page: a reload loses the mark."""
        self.page.evaluate("window.__notReloaded = true")

    def not_reloaded(self) -> bool:
        return bool(self.page.evaluate("window.__notReloaded === true"))

    def assert_only_this_host(self) -> None:
        assert self.hosts == {urlsplit(self.base).netloc}, self.hosts


def console_page(browser: Any, base: str, width: int = 1280, height: int = 900) -> Console:
    context = browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    console = Console(page, base)
    page.on("request", lambda request: console.hosts.add(urlsplit(request.url).netloc))
    return console
