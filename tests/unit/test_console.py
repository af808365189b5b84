"""The console's pure decisions: buttons per scope, the jobs page's id window, the counts'
pace, throughput from successive counts, the ids a stream watches, and the session table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from jobfleet.http.console import views
from jobfleet.http.console.sessions import Sessions, same_token
from jobfleet.options import ID_MAX


def test_buttons_follow_the_scopes() -> None:
    assert views.allowed(["read"]) == views.Allowed(cancel=False, admin=False)
    assert views.allowed(["read", "cancel"]) == views.Allowed(cancel=True, admin=False)
    assert views.allowed(["read", "admin"]) == views.Allowed(cancel=False, admin=True)


def test_a_page_reads_a_bounded_window_of_ids_below_its_top() -> None:
    first = views.page_window(None, max_id=1_000_000, window=1000)
    assert first == views.Window(top=1_000_001, floor=999_001)
    assert views.page_window(None, max_id=None) == views.Window(top=1, floor=1)
    assert views.page_window(500, max_id=None, window=1000) == views.Window(top=500, floor=1)
    assert views.page_window(None, max_id=ID_MAX).top == ID_MAX


def test_the_next_page_starts_below_a_full_page_or_below_the_window() -> None:
    window = views.Window(top=10_000, floor=5_000)
    assert views.next_before([9_999, 9_990], limit=2, where=window) == 9_990
    assert views.next_before([9_999], limit=2, where=window) == 5_000  # go on below the window
    assert views.next_before([], limit=2, where=views.Window(top=100, floor=1)) is None


def test_slow_counts_are_taken_less_often() -> None:
    assert views.counts_interval(0.01) == views.COUNTS_MIN_SECONDS
    assert views.counts_interval(2.0) == 20.0


def test_throughput_per_minute_from_finished_totals() -> None:
    now = 10_000.0
    samples = [(now - 130, 100), (now - 90, 160), (now - 30, 190), (now - 10, 150)]
    per_minute = views.throughput(samples, now)
    assert len(per_minute) == views.THROUGHPUT_MINUTES
    # The first sample is its own baseline; a total that went down (a purge) counts as 0.
    assert per_minute[-3:] == [0, 60, 30]
    assert per_minute[0] is None


def test_watched_ids_are_ids_in_range_and_bounded() -> None:
    assert views.parse_watch("3,x,5,0,-1,99999999999999999999," + str(ID_MAX)) == [3, 5, ID_MAX]
    assert views.parse_watch(None) == []
    many = ",".join(str(i) for i in range(1, 1000))
    assert len(views.parse_watch(many)) == views.WATCH_PER_STREAM


def test_heartbeat_age() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert views.heartbeat_age(now - timedelta(seconds=3), now) == 3.0
    assert views.heartbeat_age(now + timedelta(seconds=3), now) == 0.0
    assert views.heartbeat_age(None, now) is None


def test_sessions_expire_when_idle_and_stay_bounded() -> None:
    clock = [0.0]
    table = Sessions(idle_seconds=10, max_sessions=2, clock=lambda: clock[0])
    first, session = table.create("k1", "one")
    assert table.get(first) is session and len(first) >= 40
    clock[0] = 9.0
    assert table.get(first) is session  # used: its idle time starts again
    clock[0] = 18.0
    assert table.get(first) is session
    clock[0] = 29.0
    assert table.get(first) is None
    ids = [table.create("k", str(i))[0] for i in range(3)]
    assert len(table) == 2 and table.get(ids[0]) is None and table.get(ids[2]) is not None
    table.end(ids[2])
    assert table.get(ids[2]) is None and table.get(None) is None


def test_a_notice_is_shown_once_and_tokens_compare_exactly() -> None:
    _, session = Sessions().create("k", "n")
    session.notice = "done"
    assert session.take_notice() == "done" and session.take_notice() is None
    assert same_token(session.csrf, session.csrf)
    assert not same_token(session.csrf[:-1], session.csrf)
    assert not same_token(None, session.csrf)
