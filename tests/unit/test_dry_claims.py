"""DryClaims: an unlimited claim that came back empty while other claims brought jobs is left
out for a while (its empty claim reads every ready job of other types), doubling up to a
bound; a round that brings nothing, or anything that may have made work ready, ends it."""

from collections import Counter

from jobfleet.supervisor.claims import DryClaims, unlimited_counts


def test_an_empty_claim_beside_busy_ones_is_left_out_with_a_doubling_pause() -> None:
    dry = DryClaims(first=0.05, longest=0.3)
    dry.after_round({"": 1000, "fetch": 0}, claimed_any=True, busy=True, now=10.0)
    assert dry.now_dry(10.0) == {"fetch"}
    assert dry.now_dry(10.05) == frozenset()  # its pause is over: claimed again
    pauses = []
    for now in (11.0, 12.0, 13.0, 14.0):
        dry.after_round({"": 1000, "fetch": 0}, claimed_any=True, busy=True, now=now)
        pauses.append(round(dry.until["fetch"] - now, 3))
    assert pauses == [0.1, 0.2, 0.3, 0.3]  # doubling, at most `longest`


def test_jobs_found_end_the_pause_and_its_growth() -> None:
    dry = DryClaims(first=0.05, longest=1.0)
    dry.after_round({"": 10, "fetch": 0}, claimed_any=True, busy=True, now=0.0)
    dry.after_round({"": 10, "fetch": 0}, claimed_any=True, busy=True, now=1.0)
    dry.after_round({"": 10, "fetch": 3}, claimed_any=True, busy=True, now=2.0)
    assert dry.now_dry(2.0) == frozenset()
    dry.after_round({"": 10, "fetch": 0}, claimed_any=True, busy=True, now=3.0)
    assert dry.until["fetch"] == 3.05  # from the first pause again


def test_a_round_that_brings_nothing_leaves_it_to_the_idle_backoff() -> None:
    dry = DryClaims()
    dry.after_round({"": 5, "fetch": 0}, claimed_any=True, busy=True, now=0.0)
    dry.after_round({"": 0}, claimed_any=False, busy=False, now=0.01)
    assert dry.now_dry(0.01) == frozenset()


def test_an_empty_round_while_the_node_runs_jobs_keeps_the_pauses() -> None:
    """The async type's pause ran out while the children held a full load (no room for the
    main threads' claim): its claim alone came back empty; the pause grows, not ends."""
    dry = DryClaims(first=0.05, longest=1.0)
    dry.after_round({"": 5, "fetch": 0}, claimed_any=True, busy=True, now=0.0)
    dry.after_round({"fetch": 0}, claimed_any=False, busy=True, now=0.1)
    assert dry.until["fetch"] == 0.1 + 0.1
    # The main threads' claim alone, empty while jobs run: the node's own backoff, no pause.
    dry.after_round({"": 0}, claimed_any=False, busy=True, now=0.3)
    assert "" not in dry.until


def test_the_main_threads_claim_is_left_out_the_same_way() -> None:
    dry = DryClaims()
    dry.after_round({"": 0, "fetch": 200}, claimed_any=True, busy=True, now=0.0)
    assert dry.now_dry(0.0) == {""}
    dry.clear()  # NOTIFY, requeued jobs, a job falling due
    assert dry.now_dry(0.0) == frozenset()


def test_unlimited_counts_skip_the_limited_claims_statements() -> None:
    ordered = [
        ("", [("claim", {})], False),
        ("fetch", [("claim", {})], False),
        ("charge", [("claim_limited", {}), ("limit_state", {})], True),
    ]
    rows = [[(1,), (2,)], [], [(3,)], [("state",)]]
    assert unlimited_counts(ordered, rows) == {"": 2, "fetch": 0}
    assert Counter(unlimited_counts([], [])) == Counter()
