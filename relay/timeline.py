"""One desktop's walk through a cassette: what a request gets and when notifications are due.

Pure: the clock (``now``, in seconds) and the subscription check are passed in; the adapter
serves the answers, pushes the notifications and sets a timer for ``Release.wake_at``.

The chain is the desktop's notifications and non-GET exchanges, in recorded order.

Matching:
- Non-GET requests are consumed strictly in order: a request must match the next unconsumed
  exchange of the chain. An exact repeat of the last consumed request (a double click, a retry)
  gets the same answer again and releases nothing.
- GETs never block the cursor and match in any order (browsers send login GETs in parallel): a
  GET gets the latest recorded answer at or before the cursor, or else the earliest after it.
- Anything else is a miss, reported with the closest recorded requests and what differed.

Timing, one rule: each chain event is released at
``max(release of the previous event, match of the exchange that caused it) + gap / speed``,
where ``gap`` is the recorded time since the previous chain event. An exchange is "released"
when the desktop sends it. ``speed`` 0 means no waiting (order kept), 1 the recorded pace.
A due notification waits for the desktop to hold a matching subscription (the CometD client
drops its subscriptions on every re-handshake), at most ``subscribe_wait`` seconds; past that
it is skipped and reported, so that one channel nobody listens to does not stall the rest.

Presenter controls: ``paused`` holds every notification until ``resume(now)``, after which the
recorded pace starts again from ``now``. In ``step`` mode the clock releases nothing: each
``release_next()`` lets the next notification go, together with the notifications right after
it that the same exchange caused (a group); while the desktop has to act, it does nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from relay.cassette import Desktop, Event, Exchange, Notification, Request
from relay.matching import Match, closest, match

SAFE_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True, slots=True)
class Served:
    """What a request gets: ``kind`` is ``hit``, ``repeat``, ``get`` or ``miss``."""

    kind: str
    exchange: Exchange | None = None
    expected: Exchange | None = None
    closest: tuple[Match, ...] = ()
    recorded_later: Exchange | None = None

    @property
    def ok(self) -> bool:
        return self.kind != "miss"


@dataclass(slots=True)
class Release:
    """What became due: notifications to deliver now, ones given up on, when to look again."""

    delivered: list[Notification] = field(default_factory=list)
    skipped: list[Notification] = field(default_factory=list)
    wake_at: float | None = None


class Timeline:
    """The replay state of one desktop session."""

    def __init__(
        self,
        desktop: Desktop,
        *,
        start: float,
        speed: float = 1.0,
        subscribe_wait: float = 30.0,
        step: bool = False,
    ) -> None:
        if speed < 0:
            raise ValueError("speed must be >= 0")
        self.desktop = desktop
        self.speed = speed
        self.subscribe_wait = subscribe_wait
        self.start = start
        self.chain: list[Event] = [
            e
            for e in desktop.events
            if isinstance(e, Notification) or e.request.method.upper() not in SAFE_METHODS
        ]
        origin = desktop.events[0].at_ms if desktop.events else 0
        previous = [origin] + [e.at_ms for e in self.chain]  # one more than needed: no chain
        self._gaps = [(e.at_ms - p) / 1000.0 for e, p in zip(self.chain, previous, strict=False)]
        # Causes a notification waits for: this desktop's non-GET exchanges, which the desktop
        # sends in order. A GET (matched in any order, never in ``matched_at``) or another
        # desktop's exchange would hold the rest of the chain back for good.
        self._own_exchanges = {e.id for e in self.chain if isinstance(e, Exchange)}
        # For GETs: each recorded GET with the number of non-GET exchanges recorded before it.
        self._gets: list[tuple[int, Exchange]] = []
        seen = 0
        for e in desktop.events:
            if isinstance(e, Exchange):
                if e.request.method.upper() in SAFE_METHODS:
                    self._gets.append((seen, e))
                else:
                    seen += 1
        self._non_get = [e for e in self.chain if isinstance(e, Exchange)]
        self.consumed = 0  # non-GET exchanges consumed so far
        self.release_index = 0  # next chain event to release
        self.last_release = start
        self.matched_at: dict[str, float] = {}
        self.last_consumed: Exchange | None = None
        self.waiting_since: float | None = None
        self.served = 0
        self.misses = 0
        self.gets_served: dict[str, None] = {}  # ids of the GET exchanges answered, in order
        self._get_answers: dict[tuple[int, str, tuple[tuple[str, str], ...]], Served] = {}
        self.step = step
        self.paused = False
        self.permits = 0
        self._group: str | None = None  # the cause whose notifications a permit is releasing

    # -- requests

    @property
    def next_exchange(self) -> Exchange | None:
        """The non-GET exchange the desktop is expected to send next."""
        return self._non_get[self.consumed] if self.consumed < len(self._non_get) else None

    def serve(self, request: Request, now: float) -> Served:
        """Match a request and move the cursor; the caller answers with ``exchange.response``."""
        served = self.peek(request)
        if served.kind == "hit" and served.exchange is not None:
            self.matched_at[served.exchange.id] = now
            self.consumed += 1
            self.last_consumed = served.exchange
        if served.ok:
            self.served += 1
            if served.kind == "get" and served.exchange is not None:
                self.gets_served[served.exchange.id] = None
        else:
            self.misses += 1
        return served

    def peek(self, request: Request) -> Served:
        """What ``serve`` would answer, without moving anything."""
        if request.method.upper() in SAFE_METHODS:
            return self._get(request)
        expected = self.next_exchange
        if expected is not None and match(request, expected).ok:
            return Served("hit", exchange=expected)
        if self.last_consumed is not None and match(request, self.last_consumed).ok:
            return Served("repeat", exchange=self.last_consumed)
        later = next((e for e in self._non_get[self.consumed + 1 :] if match(request, e).ok), None)
        candidates = self._non_get[self.consumed :] + self._non_get[: self.consumed]
        return Served(
            "miss",
            expected=expected,
            closest=tuple(closest(request, candidates)),
            recorded_later=later,
        )

    def _get(self, request: Request) -> Served:
        # The answer depends only on the request and the cursor: desktops poll the same GETs
        # again and again, so remember it (GETs with a body are rare and not remembered).
        key = None
        if request.body is None:
            key = (self.consumed, request.path, tuple(request.query))
            known = self._get_answers.get(key)
            if known is not None:
                return known
        served = self._match_get(request)
        if key is not None and served.ok:
            if len(self._get_answers) >= 4096:
                self._get_answers.clear()
            self._get_answers[key] = served
        return served

    def _match_get(self, request: Request) -> Served:
        candidates = [(pos, e) for pos, e in self._gets if match(request, e).ok]
        before = [e for pos, e in candidates if pos <= self.consumed]
        if before:
            return Served("get", exchange=before[-1])
        if candidates:
            return Served("get", exchange=candidates[0][1])
        return Served("miss", closest=tuple(closest(request, [e for _, e in self._gets])))

    # -- notifications

    def due(self, now: float, deliverable: Callable[[Notification], bool]) -> Release:
        """Release every chain event that is due at ``now``, in order."""
        out = Release()
        while self.release_index < len(self.chain):
            event = self.chain[self.release_index]
            gap = self._gaps[self.release_index] / self.speed if self.speed else 0.0
            if isinstance(event, Exchange):
                matched = self.matched_at.get(event.id)
                if matched is None:
                    break  # waiting for the desktop to send it
                self.last_release = max(self.last_release, matched)
                self.release_index += 1
                continue
            not_before = self.last_release
            if event.cause is not None and event.cause in self._own_exchanges:
                cause_at = self.matched_at.get(event.cause)
                if cause_at is None:
                    break
                not_before = max(not_before, cause_at)
            if self.paused:
                break
            if self.step:
                in_group = event.cause is not None and event.cause == self._group
                if not in_group and self.permits == 0:
                    break
                due_at = now
            else:
                due_at = not_before + gap
            if due_at > now:
                out.wake_at = due_at
                break
            if not deliverable(event):
                if self.waiting_since is None:
                    self.waiting_since = now
                give_up_at = self.waiting_since + self.subscribe_wait
                if now < give_up_at:
                    out.wake_at = give_up_at
                    break
                out.skipped.append(event)
                self.last_release = now
            else:
                out.delivered.append(event)
                # Held back by a missing subscription: later gaps count from the real delivery.
                self.last_release = now if self.waiting_since is not None else due_at
            if self.step and not (event.cause is not None and event.cause == self._group):
                self.permits -= 1
                self._group = event.cause
            self.waiting_since = None
            self.release_index += 1
        return out

    # -- presenter controls

    def release_next(self) -> bool:
        """Step mode: let the next notification (and the rest of its group) go. False, and
        nothing kept for later, when there is none to let go (the desktop must act first, the
        scenario is over) or outside step mode."""
        if not self.step or not self.next_group:
            return False
        self.permits += 1
        return True

    def pause(self) -> None:
        self.paused = True

    def resume(self, now: float) -> None:
        """Go on at the recorded pace from ``now``."""
        self.paused = False
        self.last_release = max(self.last_release, now)

    def set_speed(self, speed: float) -> None:
        if speed < 0:
            raise ValueError("speed must be >= 0")
        self.speed = speed

    @property
    def next_event(self) -> Event | None:
        """The chain event the replay waits for (a request or a notification)."""
        return self.chain[self.release_index] if self.release_index < len(self.chain) else None

    @property
    def next_group(self) -> list[Notification]:
        """What the next release lets go in step mode: the next notification and the ones
        right after it that the same exchange caused (empty when the desktop must act)."""
        group: list[Notification] = []
        for event in self.chain[self.release_index :]:
            if not isinstance(event, Notification):
                if not group and event.id in self.matched_at:
                    continue  # sent already, ``due`` has not moved past it yet
                break
            if group and (event.cause is None or event.cause != group[0].cause):
                break
            group.append(event)
        return group

    @property
    def waiting_for_subscription(self) -> Notification | None:
        if self.waiting_since is None or self.release_index >= len(self.chain):
            return None
        event = self.chain[self.release_index]
        return event if isinstance(event, Notification) else None

    @property
    def finished(self) -> bool:
        return self.release_index >= len(self.chain)
