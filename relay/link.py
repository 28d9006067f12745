"""Causal linking: which REST exchange caused each notification. Pure: values in, causes out.

GWS answers an operation with ``{"statusCode":0}`` and reports the outcome as CometD
notifications, often before the HTTP answer (``shared/reference/gws.md``). The recorder feeds
the events to a :class:`Linker` in the order they happened (a request counts from when it was
sent, not from its answer) and the linker names each notification's cause:

1. by ``referenceId`` when the notification's ``data`` and an exchange (its request or its
   answer) both carry the same one. The answer may come after the notification, so this rule is
   settled at the end (:meth:`Linker.causes`);
2. otherwise the latest operation sent before the notification on the same *call family*: the
   call, its consult calls, and its parent named by ``parentCallUri``. ``parentCallPath`` is
   not used: it is wrong in the GWS reference page's Sample 1 (it names a call that does not
   exist). In Sample 2 this links the original call's Released to CompleteTransfer, which was
   posted on the consult call;
3. otherwise the notification is unsolicited (``None``).

An operation is a request other than GET to ``/api/v2/me/calls/{id}`` (GWS doc: every call
operation is a POST there with an ``operationName``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

_CALL_PATH = re.compile(r"/api/v2/me/calls/([^/?#]+)")
_CALL_URI = re.compile(r"/calls/([^/?#]+)\s*$")


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
        self._operations: list[tuple[str, str]] = []  # (exchange id, call id), in send order
        self._by_reference: dict[str, str] = {}
        self._pending: list[tuple[str, str | None, str | None]] = []  # (notif, ref, by family)

    def request(self, op: Operation) -> None:
        """An exchange's request was sent."""
        ref = reference_id(op.request_json)
        if ref is not None:
            self._by_reference.setdefault(ref, op.id)
        call = call_of_path(op.path)
        if call is not None and op.method.upper() != "GET":
            self._operations.append((op.id, call))

    def response(self, exchange_id: str, response_json: Any) -> None:
        """An exchange's answer arrived (it may name a ``referenceId``)."""
        ref = reference_id(response_json)
        if ref is not None:
            self._by_reference.setdefault(ref, exchange_id)

    def notification(self, notification_id: str, message: dict[str, Any]) -> None:
        """A notification arrived."""
        data = message.get("data")
        family_cause = None
        call = data.get("call") if isinstance(data, dict) else None
        if isinstance(call, dict) and isinstance(call.get("id"), str):
            call_id = call["id"]
            parent = call_of_uri(call.get("parentCallUri"))
            if parent is not None:
                self._families.union(call_id, parent)
            root = self._families.find(call_id)
            for op_id, op_call in reversed(self._operations):
                if self._families.find(op_call) == root:
                    family_cause = op_id
                    break
        self._pending.append((notification_id, reference_id(data), family_cause))

    def causes(self) -> dict[str, str | None]:
        """Notification id -> the exchange that caused it, or ``None`` when unsolicited."""
        out: dict[str, str | None] = {}
        for nid, ref, family_cause in self._pending:
            by_ref = self._by_reference.get(ref) if ref is not None else None
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
