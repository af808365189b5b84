"""The web console in a real browser (Debian's chromium through Playwright) against a real
supervisor with its HTTP child: what a user sees and does, live, with no reload, and never a
request to another host. The main pages' screenshots land in docs/console/ (README, "Web
console")."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from playwright.sync_api import expect, sync_playwright

from jobfleet.http.server import free_port
from tests.browser_support import INSTALL_TIMEOUT_SECONDS, Console, console_page, launch
from tests.conftest import ROOT, Cli, scalar, wait_until
from tests.fleet_support import FAST
from tests.test_http_fleet import answers, new_key

pytestmark = pytest.mark.timeout(INSTALL_TIMEOUT_SECONDS)
SCREENSHOTS = ROOT / "docs" / "console"
ACTIONS = ("Cancel", "Retry", "Pause", "Resume")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def server(fleet: Any, cli: Cli) -> str:
    """A supervisor with two workers and its HTTP child; the console's base URL."""
    port = free_port()
    fleet("web", "--workers", "2", "--http-port", str(port), env=FAST)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: answers(f"{base}/healthz"), what="the HTTP child to answer")
    return base


@pytest.fixture
def console(browser: Any, server: str, cli: Cli) -> Iterator[Console]:
    page = console_page(browser, server)
    page.sign_in(new_key(cli, "operator", "read,cancel,admin"))
    yield page
    page.page.context.close()


def enqueue(cli: Cli, *args: str) -> int:
    return int(cli.ok("enqueue", *args).strip())


def job_state(conn: psycopg.Connection[Any], job_id: int) -> str:
    return str(scalar(conn, "SELECT state FROM jobs WHERE id = %s", (job_id,)))


def test_a_read_only_key_sees_no_action_and_a_full_key_does(
    conn: psycopg.Connection[Any], browser: Any, server: str, cli: Cli
) -> None:
    queued = enqueue(cli, "sleep", "--payload", '{"seconds": 60}', "--queue", "parked")
    cli.ok("queues", "pause", "parked")
    dead = enqueue(cli, "fail", "--payload", '{"message": "broken"}', "--max-attempts", "1")
    wait_until(lambda: job_state(conn, dead) == "dead", what="the failing job to die")
    reader = console_page(browser, server)
    reader.sign_in(new_key(cli, "reader", "read"))
    page = reader.page
    for path in ("/ui", f"/ui/jobs/{queued}", f"/ui/jobs/{dead}", "/ui/dead", "/ui/queues"):
        reader.open(path)
        for name in ACTIONS:
            expect(page.get_by_role("button", name=name, exact=True)).to_have_count(0)
    expect(page.get_by_role("cell", name="parked", exact=True)).to_have_count(0)  # a row header
    reader.sign_out()
    reader.assert_only_this_host()

    reader.sign_in(new_key(cli, "operator", "read,cancel,admin"))
    reader.open(f"/ui/jobs/{queued}")
    expect(page.get_by_role("button", name="Cancel", exact=True)).to_be_visible()
    reader.open(f"/ui/jobs/{dead}")
    expect(page.get_by_role("button", name="Retry", exact=True)).to_be_visible()
    expect(page.locator("pre.error-text")).to_contain_text("broken")
    reader.open("/ui/queues")
    parked = page.locator('tr[data-queue="parked"]')
    expect(parked.get_by_role("button", name="Resume", exact=True)).to_be_visible()
    reader.assert_only_this_host()


def test_a_long_job_appears_moves_and_is_cancelled_without_reload(
    conn: psycopg.Connection[Any], console: Console, cli: Cli
) -> None:
    page = console.page
    console.open("/ui/jobs")
    console.mark()
    job_id = enqueue(cli, "progress", "--payload", '{"steps": 3000, "seconds": 0.2}')
    row = page.locator(f'tr[data-job="{job_id}"]')
    expect(row).to_be_visible()  # it appeared without a reload
    expect(row.locator("[data-field=state]")).to_have_text("running")
    assert console.not_reloaded()

    console.open(f"/ui/jobs/{job_id}")
    expect(page.locator("dd[data-field=state]")).to_have_text("running")
    console.mark()
    bar = page.locator("dd[data-field=progress] progress")
    first = wait_until(lambda: float(bar.evaluate("b => b.value")) or None, what="progress")
    wait_until(lambda: float(bar.evaluate("b => b.value")) > first, what="progress to move")
    assert console.not_reloaded()
    expect(page.locator("[data-field=progress-text]")).to_contain_text(re.compile(r"step \d+"))

    page.get_by_role("button", name="Cancel", exact=True).click()
    expect(page.locator("dd[data-field=state]")).to_have_text("cancelled")
    assert job_state(conn, job_id) == "cancelled"
    expect(page.get_by_role("cell", name="cancelled", exact=True)).to_be_visible()  # attempt
    console.assert_only_this_host()


def test_a_dead_job_retried_from_the_dead_letters_runs_again(
    conn: psycopg.Connection[Any], console: Console, cli: Cli
) -> None:
    dead = enqueue(cli, "fail", "--payload", '{"message": "flaky disk"}', "--max-attempts", "1")
    wait_until(lambda: job_state(conn, dead) == "dead", what="the failing job to die")
    console.open("/ui/dead")
    row = console.page.locator(f'tr[data-job="{dead}"]')
    expect(row).to_contain_text("flaky disk")
    row.get_by_role("button", name="Retry", exact=True).click()
    expect(console.page.get_by_role("status")).to_have_text(f"job {dead} queued again")
    wait_until(
        lambda: scalar(conn, "SELECT count(*) FROM job_attempts WHERE job_id = %s", (dead,)) == 2,
        what="the retried job's second attempt",
    )
    wait_until(lambda: job_state(conn, dead) == "dead", what="it to fail again")
    console.assert_only_this_host()


def test_cancel_matching_from_the_jobs_page_cancels_the_queued_jobs_of_the_type(
    conn: psycopg.Connection[Any], console: Console, cli: Cli
) -> None:
    running = enqueue(cli, "sleep", "--payload", '{"seconds": 60}')
    wait_until(lambda: job_state(conn, running) == "running", what="the long job to start")
    cli.ok("queues", "pause", "parked")
    parked = [enqueue(cli, "sleep", "--queue", "parked") for _ in range(3)]
    other = enqueue(cli, "echo", "--queue", "parked")
    page = console.page
    console.open("/ui/jobs")
    page.get_by_label("Type").fill("sleep")
    page.get_by_role("button", name="Filter", exact=True).click()
    page.get_by_role("button", name="Cancel matching", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("Cancelled 3 jobs of type sleep")
    for job_id in parked:
        state = page.locator(f'tr[data-job="{job_id}"] [data-field=state]')
        expect(state).to_have_text("cancelled")
    expect(page.locator(f'tr[data-job="{running}"] [data-field=state]')).to_have_text("running")
    assert {job_state(conn, j) for j in parked} == {"cancelled"}
    assert job_state(conn, running) == "running" and job_state(conn, other) == "queued"
    console.assert_only_this_host()


def test_a_queue_paused_from_the_console_stops_being_claimed(
    conn: psycopg.Connection[Any], console: Console, cli: Cli
) -> None:
    console.open("/ui/queues")
    default = console.page.locator('tr[data-queue="default"]')
    default.get_by_role("button", name="Pause", exact=True).click()
    expect(default.get_by_role("button", name="Resume", exact=True)).to_be_visible()
    held = enqueue(cli, "echo", "--payload", '{"held": true}')
    elsewhere = enqueue(cli, "echo", "--queue", "other")
    wait_until(lambda: job_state(conn, elsewhere) == "succeeded", what="the other queue to run")
    after = enqueue(cli, "echo", "--queue", "other")  # enqueued after the held one: claimed later
    wait_until(lambda: job_state(conn, after) == "succeeded", what="a later job to run")
    assert job_state(conn, held) == "queued"

    default.get_by_role("button", name="Resume", exact=True).click()
    wait_until(lambda: job_state(conn, held) == "succeeded", what="the resumed queue to run")
    console.assert_only_this_host()


def test_the_pages_fit_375_px_and_their_screenshots(
    conn: psycopg.Connection[Any], browser: Any, server: str, cli: Cli
) -> None:
    running = enqueue(cli, "progress", "--payload", '{"steps": 3000, "seconds": 0.2}')
    for n in range(3):
        enqueue(cli, "echo", "--payload", f'{{"n": {n}}}', "--queue", "mail")
    dead = enqueue(cli, "fail", "--payload", '{"message": "card declined"}', "--max-attempts", "1")
    wait_until(lambda: job_state(conn, dead) == "dead", what="the failing job to die")
    wait_until(lambda: job_state(conn, running) == "running", what="the long job to start")
    key = new_key(cli, "operator", "read,cancel,admin")
    pages = {
        "overview": "/ui",
        "jobs": "/ui/jobs",
        "job": f"/ui/jobs/{running}",
        "dead": "/ui/dead",
        "queues": "/ui/queues",
        "periodic": "/ui/periodic",
    }

    narrow = console_page(browser, server, width=375, height=740)
    narrow.open("/ui")
    assert fits(narrow)
    narrow.sign_in(key)  # the form is usable at that width
    for name, path in pages.items():
        narrow.open(path)
        assert fits(narrow), name
        expect(narrow.page.get_by_role("navigation", name="Console")).to_be_visible()
    narrow.open(f"/ui/jobs/{running}")
    expect(narrow.page.get_by_role("button", name="Cancel", exact=True)).to_be_in_viewport()
    narrow.assert_only_this_host()

    wide = console_page(browser, server)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    wide.open("/ui")
    wide.page.screenshot(path=str(SCREENSHOTS / "signin.png"))
    wide.sign_in(key)
    for name, path in pages.items():
        wide.open(path)
        if name != "periodic":  # the live pages: after their first update
            wide.page.locator("body[data-updated]").wait_for(state="attached")
        wide.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    assert all(Path(SCREENSHOTS / f"{n}.png").stat().st_size > 1000 for n in pages)
    wide.assert_only_this_host()


def fits(console: Console) -> bool:
    """No horizontal scrolling of the page itself (wide tables scroll in their own box)."""
    return bool(
        console.page.evaluate(
            "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        )
    )
