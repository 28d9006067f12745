"""Causal linking: which REST exchange caused each notification. Pure: values in, causes out.

GWS answers an operation with ``{"statusCode":0}`` and reports the outcome as CometD
notifications, often before the HTTP answer (``shared/reference/gws.md``). The recorder feeds
the events to a :class:`Linker` in the order they happened (a request counts from when it was
sent, not from its answer) and the linker names each notification's cause:

1. by ``referenceId`` when the notification's ``data`` and an exchange (its request or its
   answer) both carry the same one: the latest such exchange SENT before the notification (an
   answer's ``referenceId`` counts from when its request was sent; a client may reuse a
   referenceId). The answer may come after the notification, so this rule is settled at the end
   (:meth:`Linker.causes`);
2. otherwise the latest operation sent before the notification on the same *call family*: the
   call, its consult calls, and its parent named by ``parentCallUri``. ``parentCallPath`` is
   not used: it is wrong in the GWS reference page's Sample 1 (it names a call that does not
   exist). In Sample 2 this links the original call's Released to CompleteTransfer, which was
   posted on the consult call;
3. a call seen for the first time in the ``Dialing`` state (and not ``Inbound``) was made by
   the earliest Dial not yet claimed by another call: a non-GET request to
   ``/api/v2/me/devices/{id}/calls`` (GWS doc: "On ``/api/v2/me/devices/{id}/calls``: Dial"),
   on the call's own device when both name one. The Dial then counts as an operation on the
   new call, so rule 2 links the call's later notifications to it too;
4. a device or channel notification (``/v2/me/devices``, ``/v2/me/channels``: agent state,
   DND, forwarding) follows an agent-state operation (Ready, NotReady, AfterCallWork,
   StartContactCenterSession: a non-GET request to ``/api/v2/me``,
   ``/api/v2/me/devices/{id}`` or ``/api/v2/me/channels/...``) when that operation is the latest
   operation of any kind sent before it. A state change with a call operation in between (a
   supervisor forcing NotReady after a transfer) stays unsolicited;
5. otherwise the notification is unsolicited (``None``).

A call operation is a request other than GET to ``/api/v2/me/calls/{id}`` (GWS doc: every call
operation is a POST there with an ``operationName``).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

_CALL_PATH = re.compile(r"/api/v2/me/calls/([^/?#]+)")
_CALL_URI = re.compile(r"/calls/([^/?#]+)\s*$")
_DIAL_PATH = re.compile(r"/api/v2/me/devices/([^/?#]+)/calls/?$")
_STATE_PATH = re.compile(r"/api/v2/me(/devices/[^/?#]+|/channels(/[^?#]*)?)?/?$")
_DEVICE_URI = re.compile(r"/devices/([^/?#]+)\s*$")
#: Channels whose notifications report agent, device or channel state (GWS doc, "Channels").
STATE_CHANNELS = frozenset({"/v2/me/devices", "/v2/me/channels"})


def call_of_path(path: str) -> str | None:
    """The call id an operation acts on: ``/api/v2/me/calls/ID[/...]`` -> ``ID``."""
    m = _CALL_PATH.match(path)
    return m.group(1) if m else None


def call_of_uri(uri: object) -> str | None:
    """The call id at the end of a call URI such as ``parentCallUri``."""
    if not isinstance(uri, str):
        return None
    m = _CALL_URI.search(re.sub(r"\s+", "", uri))
    return m.group(1) if m else None


def device_of_dial(path: str) -> str | None:
    """The device a Dial is made on: ``/api/v2/me/devices/ID/calls`` -> ``ID``."""
    m = _DIAL_PATH.match(path)
    return m.group(1) if m else None


def is_state_operation_path(path: str) -> bool:
    """True for the resources agent-state operations are posted to (``/api/v2/me``, a device,
    a media channel)."""
    return _STATE_PATH.match(path) is not None


def device_of_uri(uri: object) -> str | None:
    """The device id at the end of a ``deviceUri``."""
    if not isinstance(uri, str):
        return None
    m = _DEVICE_URI.search(re.sub(r"\s+", "", uri))
    return m.group(1) if m else None


def reference_id(value: Any) -> str | None:
    """The ``referenceId`` at the top of a JSON object (a GWS answer or a notification's data)."""
    if isinstance(value, dict):
        ref = value.get("referenceId")
        if isinstance(ref, str | int) and not isinstance(ref, bool):
            return str(ref)
    return None


@dataclass(frozen=True, slots=True)
class Operation:
    """An exchange as the linker sees it."""

    id: str
    method: str
    path: str
    request_json: Any = None


class _Families:
    """Union-find over call ids."""

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}

    def find(self, call: str) -> str:
        root = call
        while (up := self._parent.get(root, root)) != root:
            root = up
        while call != root:  # path compression
            self._parent[call], call = root, self._parent.get(call, call)
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self._parent[ra] = rb


class Linker:
    """Feed events in the order they happened; read the causes at the end."""

    def __init__(self) -> None:
        self._families = _Families()
        self._sent = 0  # operations sent so far: their order
        self._operations: list[tuple[int, str, str]] = []  # (order, exchange id, call id)
        self._dials: list[tuple[int, str, str]] = []  # (order, exchange id, device): unclaimed
        self._calls_seen: set[str] = set()
        self._last_operation: tuple[str, bool] | None = None  # (exchange id, agent state?)
        self._requests = 0  # requests of any method sent so far
        self._send_order: dict[str, int] = {}  # exchange id -> its request's place
        self._by_reference: dict[str, list[tuple[int, str]]] = {}  # ref -> (send order, id)
        # (notification, requests sent before it, ref, cause by family)
        self._pending: list[tuple[str, int, str | None, str | None]] = []

    def request(self, op: Operation) -> None:
        """An exchange's request was sent."""
        self._requests += 1
        self._send_order[op.id] = self._requests
        ref = reference_id(op.request_json)
        if ref is not None:
            bisect.insort(self._by_reference.setdefault(ref, []), (self._requests, op.id))
        if op.method.upper() in ("GET", "HEAD"):
            return
        self._sent += 1
        path = op.path.split("?", 1)[0]
        call = call_of_path(path)
        if call is not None:
            self._operations.append((self._sent, op.id, call))
        device = device_of_dial(path)
        if device is not None:
            self._dials.append((self._sent, op.id, device))
        self._last_operation = (op.id, is_state_operation_path(path))

    def response(self, exchange_id: str, response_json: Any) -> None:
        """An exchange's answer arrived (it may name a ``referenceId``)."""
        ref = reference_id(response_json)
        order = self._send_order.get(exchange_id)
        if ref is not None and order is not None:
            bisect.insort(self._by_reference.setdefault(ref, []), (order, exchange_id))

    def notification(self, notification_id: str, message: dict[str, Any]) -> None:
        """A notification arrived."""
        data = message.get("data")
        cause = None
        call = data.get("call") if isinstance(data, dict) else None
        if isinstance(call, dict) and isinstance(call.get("id"), str):
            cause = self._call_cause(call)
        elif message.get("channel") in STATE_CHANNELS and self._last_operation is not None:
            op_id, agent_state = self._last_operation
            cause = op_id if agent_state else None
        self._pending.append((notification_id, self._requests, reference_id(data), cause))

    def _call_cause(self, call: dict[str, Any]) -> str | None:
        call_id = call["id"]
        parent = call_of_uri(call.get("parentCallUri"))
        if parent is not None:
            self._families.union(call_id, parent)
        new = call_id not in self._calls_seen
        self._calls_seen.add(call_id)
        root = self._families.find(call_id)
        for _, op_id, op_call in reversed(self._operations):
            if self._families.find(op_call) == root:
                return op_id
        if new and call.get("state") == "Dialing" and call.get("callType") != "Inbound":
            device = device_of_uri(call.get("deviceUri"))
            for i, (order, op_id, dial_device) in enumerate(self._dials):
                if device is None or dial_device == device:
                    del self._dials[i]
                    bisect.insort(self._operations, (order, op_id, call_id))
                    return op_id
        return None

    def causes(self) -> dict[str, str | None]:
        """Notification id -> the exchange that caused it, or ``None`` when unsolicited."""
        out: dict[str, str | None] = {}
        for nid, sent, ref, family_cause in self._pending:
            by_ref = None
            for order, xid in reversed(self._by_reference.get(ref, []) if ref else []):
                if order <= sent:  # the latest exchange sent before the notification
                    by_ref = xid
                    break
            out[nid] = by_ref if by_ref is not None else family_cause
        return out


def link(events: Iterable[tuple[str, Any]]) -> dict[str, str | None]:
    """Run a :class:`Linker` over ``("request", Operation)``, ``("response", (id, json))`` and
    ``("notification", (id, message))`` items, in the order they happened."""
    linker = Linker()
    for kind, value in events:
        if kind == "request":
            linker.request(value)
        elif kind == "response":
            linker.response(*value)
        elif kind == "notification":
            linker.notification(*value)
        else:
            raise ValueError(f"unknown event kind {kind!r}")
    return linker.causes()
