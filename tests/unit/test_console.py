"""The console's pure decisions: buttons per scope, when a bulk cancel is offered, the jobs
page's id window, the counts' pace, throughput from successive counts, the ids a stream
watches, and session tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from jobfleet.http.console import sessions, views
from jobfleet.options import ID_MAX


def test_buttons_follow_the_scopes() -> None:
    assert views.allowed(["read"]) == views.Allowed(cancel=False, admin=False)
    assert views.allowed(["read", "cancel"]) == views.Allowed(cancel=True, admin=False)
    assert views.allowed(["read", "admin"]) == views.Allowed(cancel=False, admin=True)


def test_cancel_matching_is_offered_only_for_filters_a_bulk_cancel_means() -> None:
    def offered(**filters: str | None) -> bool:
        return views.cancels_matching({"state": None, "node": None, **filters})

    assert offered(type="echo") and offered(queue="mail") and offered(type="a", queue="b")
    assert offered(type="echo", state="queued")
    assert not offered() and not offered(state="queued")  # every queued job: never one click
    assert not offered(type="echo", state="running") and not offered(type="echo", node="n1")


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


def test_a_session_token_is_signed_with_the_keys_secret_and_expires() -> None:
    secret, other = b"s" * 32, b"o" * 32
    token = sessions.issue("0123456789abcdef", secret, now=1000.0)
    claim = sessions.parse(token)
    assert claim is not None and claim.key_id == "0123456789abcdef"
    assert claim.expires == 1000 + sessions.SESSION_SECONDS
    assert sessions.valid(claim, secret, now=1001.0)
    assert not sessions.valid(claim, other, now=1001.0)  # another key's secret
    assert not sessions.valid(claim, secret, now=claim.expires)  # expired
    forged = sessions.parse(token.replace(f".{claim.expires}.", f".{claim.expires + 9}.", 1))
    assert forged is not None and not sessions.valid(forged, secret, now=1001.0)
    for bad in (None, "", "jf_0123456789abcdef_secret", token + "x", token.replace(".", "_")):
        assert sessions.parse(bad) is None
    assert sessions.issue("0123456789abcdef", secret, 1000.0) != token  # a fresh nonce


def test_the_csrf_token_is_the_sessions_own() -> None:
    secret = b"s" * 32
    first = sessions.parse(sessions.issue("0123456789abcdef", secret, 0.0))
    second = sessions.parse(sessions.issue("0123456789abcdef", secret, 0.0))
    assert first is not None and second is not None
    token = sessions.csrf_token(first, secret)
    assert sessions.same_token(token, token)
    assert token != sessions.csrf_token(second, secret)
    assert not sessions.same_token(token[:-1], token)
    assert not sessions.same_token(None, token)
