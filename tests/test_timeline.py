"""relay/timeline.py: serving requests in order and the release rule, on an injected clock.

Times are plain floats passed in; nothing here sleeps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest
from factories import CONSULT, desktop, exchange, notification, request, seed_desktop
from hypothesis import given
from hypothesis import strategies as st

from relay.cassette import Desktop, Exchange, Notification, Request, Response
from relay.timeline import Release, Timeline

START = 1000.0
TICK = 1e-6  # "just before"

ANSWER = request(json={"operationName": "Answer"})
TRANSFER = request(
    json={"operationName": "InitiateTransfer", "destination": {"phoneNumber": "5001"}}
)
COMPLETE = request(path=CONSULT, json={"operationName": "CompleteTransfer"})
HOLD = request(json={"operationName": "Hold"})


def everyone(_: Notification) -> bool:
    return True


def nobody(_: Notification) -> bool:
    return False


def ids(events: Iterable[Any]) -> list[str]:
    return [e.id for e in events]


def timeline(d: Desktop | None = None, **kw: Any) -> Timeline:
    return Timeline(seed_desktop() if d is None else d, start=START, **kw)


def play(
    tl: Timeline,
    script: Iterable[tuple[float, Request]] = (),
    deliverable: Callable[[Notification], bool] = everyone,
) -> list[tuple[str, float]]:
    """Act as the adapter: serve each request at its time, call ``due`` at every wake-up.

    Returns each delivered notification with the clock value it was delivered at.
    """
    pending = sorted(script, key=lambda s: s[0])
    out: list[tuple[str, float]] = []
    now = tl.start
    for _ in range(1000):
        while pending and pending[0][0] <= now:
            at, req = pending.pop(0)
            assert tl.serve(req, at).ok
        release = tl.due(now, deliverable)
        out.extend((n.id, now) for n in release.delivered)
        wakes = [t for t in (release.wake_at, pending[0][0] if pending else None) if t is not None]
        if not wakes:
            return out
        assert min(wakes) > now, "a wake-up must be in the future"
        now = min(wakes)
    raise AssertionError("the timeline never settled")


RECORDED_PACE = [(START + 10.0, ANSWER), (START + 36.0, TRANSFER), (START + 48.0, COMPLETE)]


# --- the seed desktop at the recorded pace --------------------------------------------------


def test_the_chain_is_notifications_and_non_get_exchanges_in_recorded_order() -> None:
    tl = timeline()
    assert ids(tl.chain) == ["n1", "x1", "n2", "x2", "n3", "n4", "x3", "n5", "n6"]
    assert tl.next_exchange is not None and tl.next_exchange.id == "x1"
    assert not tl.finished


def test_n1_is_due_at_start() -> None:
    tl = timeline()
    early = tl.due(START - 0.5, everyone)
    assert early == Release(delivered=[], skipped=[], wake_at=START)
    release = tl.due(START, everyone)
    assert ids(release.delivered) == ["n1"]
    assert release.skipped == []
    assert release.wake_at is None  # the rest waits for the desktop to answer


def test_n2_is_due_exactly_a_tenth_of_a_second_after_x1_is_served() -> None:
    tl = timeline()
    tl.due(START, everyone)
    assert tl.due(START + 3.0, everyone) == Release()  # nothing before the answer
    served = tl.serve(ANSWER, START + 3.0)
    assert served.kind == "hit"
    assert served.exchange is not None and served.exchange.id == "x1"
    assert served.exchange.response is not None
    assert served.exchange.response.status == 200

    release = tl.due(START + 3.0, everyone)
    assert release.delivered == []
    assert release.wake_at == pytest.approx(START + 3.1)
    wake = release.wake_at
    assert wake is not None
    just_before = tl.due(wake - TICK, everyone)
    assert just_before.delivered == []
    assert just_before.wake_at == wake
    assert ids(tl.due(wake, everyone).delivered) == ["n2"]
    assert tl.due(wake + 100.0, everyone) == Release()  # n3 waits for x2, not for the clock


def test_at_the_recorded_pace_every_notification_keeps_its_recorded_time() -> None:
    delivered = play(timeline(), RECORDED_PACE)
    assert [i for i, _ in delivered] == ["n1", "n2", "n3", "n4", "n5", "n6"]
    recorded = {n.id: n.at_ms / 1000.0 for n in seed_desktop().notifications()}
    for nid, at in delivered:
        assert at == pytest.approx(START + recorded[nid]), nid


def test_n3_and_n4_are_released_together() -> None:
    tl = timeline()
    tl.due(START, everyone)
    tl.serve(ANSWER, START + 1.0)
    tl.due(START + 1.1, everyone)
    tl.serve(TRANSFER, START + 2.0)
    release = tl.due(START + 2.0, everyone)
    assert release.wake_at == pytest.approx(START + 2.1)
    assert release.wake_at is not None
    assert ids(tl.due(release.wake_at, everyone).delivered) == ["n3", "n4"]


def test_finished_once_the_last_notification_is_released() -> None:
    tl = timeline()
    play(tl, RECORDED_PACE[:2])
    assert not tl.finished
    play(tl, RECORDED_PACE[2:])
    assert tl.finished
    assert tl.next_exchange is None
    assert tl.due(START + 1e6, everyone) == Release()


def test_a_trailing_exchange_keeps_the_timeline_unfinished() -> None:
    tl = timeline(desktop(events=[notification(id="n1"), exchange(id="x1", at_ms=500)]))
    assert ids(tl.due(START, everyone).delivered) == ["n1"]
    assert not tl.finished
    tl.serve(request(), START + 1)
    tl.due(START + 1, everyone)
    assert tl.finished


# --- speed ----------------------------------------------------------------------------------


def test_at_speed_2_the_gaps_halve() -> None:
    delivered = dict(play(timeline(speed=2.0), RECORDED_PACE))
    assert delivered["n1"] == START
    assert delivered["n2"] == pytest.approx(START + 10.05)
    assert delivered["n3"] == delivered["n4"] == pytest.approx(START + 36.05)
    assert delivered["n6"] == pytest.approx(START + 48.05)


@pytest.mark.parametrize(("speed", "times"), [(1.0, [0, 4, 10]), (2.0, [0, 2, 5]), (0, [0, 0, 0])])
def test_gaps_between_unsolicited_notifications_scale_with_speed(
    speed: float, times: list[float]
) -> None:
    d = desktop(
        events=[
            notification(id="a", at_ms=0),
            notification(id="b", at_ms=4000),
            notification(id="c", at_ms=10000),
        ]
    )
    delivered = play(timeline(d, speed=speed))
    assert [i for i, _ in delivered] == ["a", "b", "c"]
    assert [t for _, t in delivered] == pytest.approx([START + t for t in times])


def test_at_speed_0_a_notification_is_released_as_soon_as_its_cause_is_matched() -> None:
    tl = timeline(speed=0)
    assert ids(tl.due(START, everyone).delivered) == ["n1"]
    tl.serve(ANSWER, START + 7.0)
    assert ids(tl.due(START + 7.0, everyone).delivered) == ["n2"]
    tl.serve(TRANSFER, START + 8.0)
    assert ids(tl.due(START + 8.0, everyone).delivered) == ["n3", "n4"]


def test_a_negative_speed_is_refused() -> None:
    with pytest.raises(ValueError, match="speed"):
        timeline(speed=-1)


# --- release relative to the match ----------------------------------------------------------


@pytest.mark.parametrize("answered_after", [0.0, 1.0, 50.0])
def test_a_notification_is_released_relative_to_the_match_of_its_cause(
    answered_after: float,
) -> None:
    delivered = dict(play(timeline(), [(START + answered_after, ANSWER)]))
    assert delivered["n2"] == pytest.approx(START + answered_after + 0.1)


def test_order_is_kept_when_the_desktop_sends_x2_early() -> None:
    tl = timeline()
    tl.due(START, everyone)
    tl.serve(ANSWER, START + 1.0)
    assert tl.serve(TRANSFER, START + 1.05).kind == "hit"  # before n2 is out
    release = tl.due(START + 1.05, everyone)
    assert release.delivered == []
    assert release.wake_at == pytest.approx(START + 1.1)
    assert release.wake_at is not None
    at_n2 = tl.due(release.wake_at, everyone)
    assert ids(at_n2.delivered) == ["n2"]
    # n3 counts its gap from n2's release, not from x2's early match.
    assert at_n2.wake_at == pytest.approx(START + 1.2)
    assert at_n2.wake_at is not None
    assert ids(tl.due(at_n2.wake_at, everyone).delivered) == ["n3", "n4"]


def test_a_cause_on_another_desktop_does_not_hold_a_notification_back() -> None:
    d = desktop(events=[notification(id="n1", at_ms=0, cause="elsewhere")])
    assert ids(timeline(d).due(START, everyone).delivered) == ["n1"]


# --- waiting for a subscription -------------------------------------------------------------


def test_a_notification_waits_for_a_subscription_then_is_skipped() -> None:
    tl = timeline(subscribe_wait=5.0)
    first = tl.due(START, nobody)
    assert first == Release(delivered=[], skipped=[], wake_at=START + 5.0)
    assert tl.waiting_for_subscription is not None
    assert tl.waiting_for_subscription.id == "n1"
    later = tl.due(START + 2.0, nobody)
    assert later.wake_at == START + 5.0  # counted from the start of the wait
    assert tl.due(START + 5.0 - TICK, nobody).skipped == []
    gave_up = tl.due(START + 5.0, nobody)
    assert ids(gave_up.skipped) == ["n1"]
    assert gave_up.delivered == []
    assert tl.waiting_for_subscription is None
    # The next ones go on.
    tl.serve(ANSWER, START + 6.0)
    after = tl.due(START + 6.0, everyone)
    assert after.delivered == []
    assert after.wake_at == pytest.approx(START + 6.1)
    assert after.wake_at is not None
    assert ids(tl.due(after.wake_at, everyone).delivered) == ["n2"]


def test_after_a_skip_the_next_notification_goes_on_from_the_skip() -> None:
    d = desktop(
        events=[
            notification(id="a", at_ms=0, channel="/nobody"),
            notification(id="b", at_ms=1000, channel="/v2/me/calls"),
            notification(id="c", at_ms=1000, channel="/v2/me/calls"),
        ]
    )
    tl = timeline(d, subscribe_wait=5.0)

    def subscribed(n: Notification) -> bool:
        return n.channel == "/v2/me/calls"

    assert tl.due(START, subscribed).wake_at == START + 5.0
    skip = tl.due(START + 5.0, subscribed)
    assert ids(skip.skipped) == ["a"]
    assert skip.delivered == []
    assert skip.wake_at == pytest.approx(START + 6.0)
    assert ids(tl.due(START + 6.0, subscribed).delivered) == ["b", "c"]
    assert tl.finished


def test_a_skip_and_a_delivery_can_come_in_one_release() -> None:
    d = desktop(
        events=[
            notification(id="a", at_ms=0, channel="/nobody"),
            notification(id="b", at_ms=0, channel="/v2/me/calls"),
        ]
    )
    tl = timeline(d, subscribe_wait=5.0)
    tl.due(START, lambda n: n.channel != "/nobody")
    release = tl.due(START + 5.0, lambda n: n.channel != "/nobody")
    assert (ids(release.skipped), ids(release.delivered)) == (["a"], ["b"])


def test_after_a_delayed_delivery_later_gaps_count_from_the_real_delivery() -> None:
    d = desktop(events=[notification(id="a", at_ms=0), notification(id="b", at_ms=1000)])
    tl = timeline(d, subscribe_wait=30.0)
    assert tl.due(START, nobody).wake_at == START + 30.0
    release = tl.due(START + 3.0, everyone)  # the desktop subscribed at +3 s
    assert ids(release.delivered) == ["a"]
    assert release.wake_at == pytest.approx(START + 4.0)
    assert tl.due(START + 4.0 - TICK, everyone).delivered == []
    assert ids(tl.due(START + 4.0, everyone).delivered) == ["b"]


def test_each_notification_gets_its_own_wait() -> None:
    d = desktop(events=[notification(id="a", at_ms=0), notification(id="b", at_ms=0)])
    tl = timeline(d, subscribe_wait=5.0)
    tl.due(START, nobody)
    first = tl.due(START + 5.0, nobody)
    assert ids(first.skipped) == ["a"]
    assert first.wake_at == START + 10.0
    assert ids(tl.due(START + 10.0, nobody).skipped) == ["b"]


# --- serving requests -----------------------------------------------------------------------


def test_non_gets_are_served_strictly_in_order() -> None:
    tl = timeline()
    served = tl.serve(TRANSFER, START + 1.0)
    assert served.kind == "miss"
    assert not served.ok
    assert served.exchange is None
    assert served.expected is not None and served.expected.id == "x1"
    assert served.recorded_later is not None and served.recorded_later.id == "x2"
    assert ids(m.exchange for m in served.closest) == ["x2", "x1", "x3"]
    assert served.closest[0].ok
    assert (tl.consumed, tl.served, tl.misses) == (0, 0, 1)
    assert tl.matched_at == {}
    # The cursor did not move: x1 is still what comes next.
    assert tl.serve(ANSWER, START + 2.0).kind == "hit"
    assert tl.serve(TRANSFER, START + 3.0).kind == "hit"
    assert tl.matched_at == {"x1": START + 2.0, "x2": START + 3.0}


def test_a_miss_names_the_closest_recorded_requests() -> None:
    served = timeline().serve(HOLD, START)
    assert served.kind == "miss"
    assert served.recorded_later is None
    assert served.expected is not None and served.expected.id == "x1"
    assert ids(m.exchange for m in served.closest) == ["x1", "x2", "x3"]
    assert [d.where for d in served.closest[0].differences] == ["operationName"]


def test_an_exact_repeat_of_the_last_consumed_gets_the_same_answer_and_releases_nothing() -> None:
    tl = timeline()
    tl.due(START, everyone)
    first = tl.serve(ANSWER, START + 1.0)
    again = tl.serve(ANSWER, START + 5.0)
    assert again.kind == "repeat"
    assert again.ok
    assert again.exchange is first.exchange
    assert tl.consumed == 1
    assert tl.matched_at == {"x1": START + 1.0}
    assert (tl.served, tl.misses) == (2, 0)
    assert ids(tl.due(START + 1.1, everyone).delivered) == ["n2"]
    assert tl.due(START + 100.0, everyone) == Release()


def test_only_the_last_consumed_request_counts_as_a_repeat() -> None:
    tl = timeline()
    tl.serve(ANSWER, START + 1.0)
    tl.serve(TRANSFER, START + 2.0)
    served = tl.serve(ANSWER, START + 3.0)
    assert served.kind == "miss"
    assert served.expected is not None and served.expected.id == "x3"
    # Already consumed exchanges are still candidates for the report.
    assert "x1" in ids(m.exchange for m in served.closest)
    assert served.closest[0].exchange.id == "x1"


def test_a_request_recorded_twice_is_a_hit_twice_before_it_is_a_repeat() -> None:
    d = desktop(
        events=[
            exchange(id="h1", at_ms=0, json={"operationName": "Hold"}),
            exchange(id="h2", at_ms=10, json={"operationName": "Hold"}),
        ]
    )
    tl = timeline(d)
    assert [tl.serve(HOLD, START + i).kind for i in range(3)] == ["hit", "hit", "repeat"]
    assert tl.serve(HOLD, START + 3).exchange is d.events[1]


def test_peek_moves_nothing() -> None:
    tl = timeline()
    tl.due(START, everyone)
    assert tl.peek(ANSWER).kind == "hit"
    assert tl.peek(TRANSFER).kind == "miss"
    assert tl.peek(request(method="GET", path="/api/v2/nothing")).kind == "miss"
    assert (tl.consumed, tl.served, tl.misses, tl.matched_at) == (0, 0, 0, {})
    assert tl.last_consumed is None
    assert tl.due(START + 100.0, everyone) == Release()
    assert tl.serve(ANSWER, START + 100.0).kind == "hit"
    assert tl.peek(ANSWER).kind == "repeat"
    assert tl.consumed == 1


# --- GETs -----------------------------------------------------------------------------------


def gets_desktop() -> Desktop:
    me = "/api/v2/me"
    return desktop(
        events=[
            exchange(id="g1", at_ms=0, method="GET", path=me, answer={"v": "a"}),
            exchange(id="g2", at_ms=50, method="GET", path=me, answer={"v": "b"}),
            notification(id="n1", at_ms=100),
            exchange(id="x1", at_ms=1000, json={"operationName": "Answer"}),
            exchange(id="g3", at_ms=2000, method="GET", path=me, answer={"v": "c"}),
            exchange(id="c1", at_ms=2500, method="GET", path=me + "/calls", answer={"calls": []}),
            exchange(id="x2", at_ms=3000, json={"operationName": "Hold"}),
            notification(id="n2", at_ms=3100, cause="x2"),
        ]
    )


def get(path: str, query: list[tuple[str, str]] | None = None) -> Request:
    return request(method="GET", path=path, query=query)


def test_gets_are_not_in_the_chain() -> None:
    tl = timeline(gets_desktop())
    assert ids(tl.chain) == ["n1", "x1", "x2", "n2"]


def test_a_get_gets_the_latest_answer_at_or_before_the_cursor() -> None:
    tl = timeline(gets_desktop())
    served = tl.serve(get("/api/v2/me"), START)
    assert served.kind == "get"
    assert served.ok
    assert served.exchange is not None and served.exchange.id == "g2"
    tl.serve(ANSWER, START + 1.0)
    assert ids([tl.serve(get("/api/v2/me"), START + 2.0).exchange]) == ["g3"]
    tl.serve(HOLD, START + 3.0)
    assert ids([tl.serve(get("/api/v2/me"), START + 4.0).exchange]) == ["g3"]


def test_a_get_recorded_only_later_gets_the_earliest_after_the_cursor() -> None:
    tl = timeline(gets_desktop())
    served = tl.serve(get("/api/v2/me/calls"), START)
    assert served.kind == "get"
    assert served.exchange is not None and served.exchange.id == "c1"


def test_the_gets_served_are_remembered_once_each_in_order() -> None:
    tl = timeline(gets_desktop())
    for path in ("/api/v2/me/calls", "/api/v2/me", "/api/v2/me/calls", "/api/v2/nothing"):
        tl.serve(get(path), START)
    assert list(tl.gets_served) == ["c1", "g2"]


def test_gets_never_move_the_cursor_nor_release_anything() -> None:
    tl = timeline(gets_desktop())
    assert ids(tl.due(START + 0.1, everyone).delivered) == ["n1"]
    for path in ("/api/v2/me", "/api/v2/me/calls", "/api/v2/me"):
        assert tl.serve(get(path), START + 1.0).ok
    assert tl.consumed == 0
    assert tl.matched_at == {}
    assert tl.last_consumed is None
    assert tl.next_exchange is not None and tl.next_exchange.id == "x1"
    assert tl.due(START + 100.0, everyone) == Release()
    assert tl.served == 3


def test_an_unrecorded_get_is_a_miss_with_the_closest_recorded_gets() -> None:
    tl = timeline(gets_desktop())
    served = tl.serve(get("/api/v2/me", query=[("fields", "*")]), START)
    assert served.kind == "miss"
    assert served.expected is None
    assert served.closest
    assert all(m.exchange.request.method == "GET" for m in served.closest)
    assert [d.where for d in served.closest[0].differences] == ["query"]
    assert tl.misses == 1


def test_the_first_event_sets_the_origin_even_when_it_is_a_get() -> None:
    # n1 is recorded 100 ms after the first GET: it is due 0.1 s after the start.
    tl = timeline(gets_desktop())
    assert tl.due(START, everyone).wake_at == pytest.approx(START + 0.1)


def test_a_notification_caused_by_a_get_does_not_stall_the_chain() -> None:
    d = desktop(
        events=[
            exchange(id="g1", at_ms=0, method="GET", path="/api/v2/me"),
            notification(id="n1", at_ms=100, cause="g1"),
            exchange(id="x1", at_ms=200, json={"operationName": "Answer"}),
            notification(id="n2", at_ms=300, cause="x1"),
        ]
    )
    tl = timeline(d)
    assert ids(tl.due(START + 0.1, everyone).delivered) == ["n1"]
    tl.serve(ANSWER, START + 1.0)
    assert ids(tl.due(START + 1.1, everyone).delivered) == ["n2"]
    assert tl.finished


# --- presenter controls ---------------------------------------------------------------------


def test_pause_holds_notifications_and_resume_restarts_the_pace_from_now() -> None:
    tl = timeline()
    tl.pause()
    assert tl.due(START, everyone) == Release()
    tl.resume(START + 5.0)
    assert ids(tl.due(START + 5.0, everyone).delivered) == ["n1"]
    tl.serve(ANSWER, START + 6.0)  # requests are still served while paused
    tl.pause()
    assert tl.due(START + 6.1, everyone) == Release()
    assert tl.next_event is not None and tl.next_event.id == "n2"
    tl.resume(START + 20.0)
    release = tl.due(START + 20.0, everyone)
    assert release.delivered == []
    assert release.wake_at == pytest.approx(START + 20.1)


def test_step_mode_releases_one_group_per_permit() -> None:
    tl = timeline(step=True)
    assert tl.due(START + 60.0, everyone) == Release()  # the clock alone releases nothing
    tl.release_next()
    assert ids(tl.due(START + 60.0, everyone).delivered) == ["n1"]
    tl.serve(ANSWER, START + 61.0)
    assert tl.due(START + 99.0, everyone) == Release()
    tl.release_next()
    assert ids(tl.due(START + 99.0, everyone).delivered) == ["n2"]
    tl.serve(TRANSFER, START + 100.0)
    tl.release_next()
    assert ids(tl.due(START + 100.0, everyone).delivered) == ["n3", "n4"]  # both caused by x2
    tl.serve(COMPLETE, START + 101.0)
    assert tl.due(START + 101.0, everyone) == Release()
    tl.release_next()
    assert ids(tl.due(START + 101.0, everyone).delivered) == ["n5", "n6"]
    assert tl.finished
    assert tl.permits == 0


def test_next_group_is_what_one_release_lets_go() -> None:
    tl = timeline(step=True)
    assert ids(tl.next_group) == ["n1"]  # unsolicited: a group of one
    tl.release_next()
    tl.due(START, everyone)
    assert tl.next_group == []  # the desktop must send x1 first
    tl.serve(ANSWER, START + 1.0)
    tl.due(START + 1.0, everyone)
    assert ids(tl.next_group) == ["n2"]
    tl.release_next()
    tl.due(START + 1.0, everyone)
    tl.serve(TRANSFER, START + 2.0)
    tl.due(START + 2.0, everyone)
    group = ids(tl.next_group)
    tl.release_next()
    assert ids(tl.due(START + 2.0, everyone).delivered) == group == ["n3", "n4"]


def test_step_mode_needs_a_permit_per_unsolicited_notification() -> None:
    d = desktop(events=[notification(id="a", at_ms=0), notification(id="b", at_ms=0)])
    tl = timeline(d, step=True)
    tl.release_next()
    assert ids(tl.due(START, everyone).delivered) == ["a"]
    assert tl.due(START, everyone) == Release()
    tl.release_next()
    assert ids(tl.due(START, everyone).delivered) == ["b"]


def test_set_speed_applies_to_what_is_still_to_come() -> None:
    tl = timeline()
    tl.due(START, everyone)
    tl.serve(ANSWER, START + 1.0)
    tl.set_speed(0.5)
    assert tl.due(START + 1.0, everyone).wake_at == pytest.approx(START + 1.2)
    with pytest.raises(ValueError, match="speed"):
        tl.set_speed(-0.1)
    assert tl.speed == 0.5


def test_next_event_is_what_the_replay_waits_for() -> None:
    tl = timeline()
    assert tl.next_event is not None and tl.next_event.id == "n1"
    tl.due(START, everyone)
    assert tl.next_event is not None and tl.next_event.id == "x1"
    play(tl, RECORDED_PACE)
    assert tl.next_event is None


# --- the release rule, checked against a direct computation ---------------------------------


@given(
    speed=st.sampled_from([0, 0.5, 1.0, 2.0, 10.0]),
    delays=st.lists(st.floats(0, 100, allow_nan=False), min_size=3, max_size=3),
)
def test_the_release_rule(speed: float, delays: list[float]) -> None:
    """Each notification at max(previous release, match of its cause) + gap / speed."""
    d = seed_desktop()
    matched: dict[str, float] = {}
    script = []
    at = START
    for req, xid, delay in zip(
        (ANSWER, TRANSFER, COMPLETE), ("x1", "x2", "x3"), delays, strict=True
    ):
        at += delay
        matched[xid] = at
        script.append((at, req))
    delivered = play(Timeline(d, start=START, speed=speed), script)
    assert [i for i, _ in delivered] == ["n1", "n2", "n3", "n4", "n5", "n6"]

    expected: dict[str, float] = {}
    previous_at, release = 0, START
    for event in d.events:
        gap = (event.at_ms - previous_at) / 1000.0
        previous_at = event.at_ms
        if isinstance(event, Notification):
            base = max(release, matched[event.cause]) if event.cause else release
            release = base + (gap / speed if speed else 0.0)
            expected[event.id] = release
        else:
            release = max(release, matched[event.id])
    for nid, when in delivered:
        assert when == pytest.approx(expected[nid]), nid


def test_a_desktop_of_gets_only_serves_them() -> None:
    # Nothing to release and no cursor to move: every GET is still answered.
    get = Exchange(
        id="x1",
        at_ms=0,
        request=Request(method="GET", path="/api/v2/me"),
        response=Response(status=200),
    )
    timeline = Timeline(Desktop(name="agent", events=[get]), start=0.0)
    assert timeline.serve(Request(method="GET", path="/api/v2/me"), 1.0).exchange is get
    assert timeline.due(1.0, lambda _: True).delivered == []
    assert timeline.finished


def test_a_release_while_the_desktop_must_act_is_not_kept_for_later() -> None:
    tl = timeline(step=True)
    assert tl.release_next() is True
    assert ids(tl.due(START, everyone).delivered) == ["n1"]
    assert tl.next_group == []  # the desktop must send x1 first
    assert tl.release_next() is False
    assert tl.permits == 0
    tl.serve(ANSWER, START + 1.0)
    assert tl.due(START + 1.0, everyone) == Release()  # n2 still waits for its own press
    assert tl.release_next() is True
    assert ids(tl.due(START + 1.0, everyone).delivered) == ["n2"]


def test_a_release_outside_step_mode_releases_nothing() -> None:
    tl = timeline()
    assert tl.release_next() is False
    assert tl.permits == 0
