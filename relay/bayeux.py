"""A Bayeux 1.0 server as a pure state machine: messages in, decisions out.

No sockets, no clock, no randomness: the adapter (``relay.replay``) passes messages and a
``new_id`` function in, and acts on what comes back (reply now, hold the connect, push events).

Rules, from the Bayeux 1.0 specification and what real clients need
(``shared/reference/bayeux.md``):

- A request is a JSON array of messages (a single object and the form field ``message=`` are
  accepted too). Anything else is a protocol error (HTTP 400), never a crash.
- ``/meta/handshake`` must be alone in its request; it creates a client with a fresh clientId.
- Any other message needs a known ``clientId``; otherwise the reply is ``402::Unknown client``
  with ``advice.reconnect = "handshake"`` (quoted from a real Genesys server).
- ``/meta/connect`` is held only when it is alone in its request, the client has connected
  before (the FIRST connect is answered at once: aiocometd's ``open()`` waits for it), the client
  did not ask ``advice.timeout: 0``, and nothing is queued. A held connect ends on an event, a
  disconnect or the advertised timeout, whichever comes first (the adapter does the waiting).
- Subscriptions echo ``subscription`` exactly as sent; ``/meta/**`` is refused with 403, an
  invalid channel with 405; a ``subscription`` that is an object or holds arrays or objects is a
  protocol error.
  Wildcards are trailing only: ``/a/*`` is one more segment, ``/a/**`` one or more.
- Each event is delivered once per client, however many subscriptions match it.
- Reply ``id`` equals the request ``id``; ids are not unique, so no state is keyed on them.

State per client::

    (handshake) --> HANDSHAKEN --first connect, answered at once--> CONNECTED
    CONNECTED --connect (alone, queue empty, timeout != 0)--> held until event/timeout
    any --disconnect--> gone (later messages get 402)
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from relay.errors import BayeuxError

Message = dict[str, Any]

HANDSHAKE = "/meta/handshake"
CONNECT = "/meta/connect"
SUBSCRIBE = "/meta/subscribe"
UNSUBSCRIBE = "/meta/unsubscribe"
DISCONNECT = "/meta/disconnect"

BAYEUX_VERSION = "1.0"
CONNECTION_TYPES = ("websocket", "long-polling", "callback-polling")


# --- parsing --------------------------------------------------------------------------------


def parse_messages(body: bytes, content_type: str | None = None) -> list[Message]:
    """Parse a Bayeux request body into messages, or raise BayeuxError (HTTP 400).

    Accepts a JSON array of messages, a single message object, or a form body whose
    ``message`` field holds either.
    """
    if content_type and "x-www-form-urlencoded" in content_type.lower():
        try:
            form = urllib.parse.parse_qs(body.decode("utf-8"), strict_parsing=False)
        except UnicodeDecodeError as e:
            raise BayeuxError("form body is not UTF-8") from e
        if "message" not in form:
            raise BayeuxError("form body has no 'message' field")
        body = form["message"][0].encode("utf-8")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise BayeuxError(f"body is not valid JSON ({e})") from e
    return validate_messages(value)


def validate_messages(value: Any) -> list[Message]:
    """Check a decoded JSON value is one or more Bayeux messages."""
    messages = [value] if isinstance(value, dict) else value
    if not isinstance(messages, list) or not messages:
        raise BayeuxError("expected a Bayeux message or a non-empty array of messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise BayeuxError(f"message {i} is not an object")
        channel = message.get("channel")
        if not isinstance(channel, str) or not is_valid_channel(channel, wildcards=False):
            raise BayeuxError(f"message {i} has no valid 'channel'")
        mid = message.get("id")
        # bool is an int in Python, but ``true`` is not a message id.
        if mid is not None and (isinstance(mid, bool) or not isinstance(mid, str | int)):
            raise BayeuxError(f"message {i} has an 'id' that is neither a string nor a number")
        cid = message.get("clientId")
        if cid is not None and not isinstance(cid, str):
            raise BayeuxError(f"message {i} has a 'clientId' that is not a string")
        # A subscription is a channel or a list of channels. A wrong scalar is refused with a
        # 405 reply that echoes it; deeper structure is no Bayeux message (and JSON may nest
        # deeper than the reply could be written).
        sub = message.get("subscription")
        if isinstance(sub, dict) or (
            isinstance(sub, list) and any(isinstance(p, list | dict) for p in sub)
        ):
            raise BayeuxError(f"message {i} has a 'subscription' that is not a channel or a list")
    return messages


def is_valid_channel(channel: str, *, wildcards: bool) -> bool:
    """A channel name: ``/seg/seg``; with ``wildcards``, a trailing ``*`` or ``**`` is allowed."""
    if not channel.startswith("/") or len(channel) < 2:
        return False
    segments = channel[1:].split("/")
    for i, seg in enumerate(segments):
        if not seg:
            return False
        if "*" in seg and not (wildcards and i == len(segments) - 1 and seg in ("*", "**")):
            return False
    return True


def channel_matches(pattern: str, channel: str) -> bool:
    """Does a subscription ``pattern`` match ``channel``? Trailing wildcards only."""
    if pattern == channel:
        return True
    if pattern.endswith("/**"):
        prefix = pattern[:-2]
        return channel.startswith(prefix) and len(channel) > len(prefix)
    if pattern.endswith("/*"):
        prefix = pattern[:-1]
        return (
            channel.startswith(prefix)
            and len(channel) > len(prefix)
            and "/" not in channel[len(prefix) :]
        )
    return False


def is_meta(channel: str) -> bool:
    return channel.startswith("/meta/")


# --- the server -----------------------------------------------------------------------------


@dataclass(slots=True)
class Client:
    """One Bayeux client (one clientId). ``owner`` is the adapter's session it belongs to."""

    client_id: str
    owner: str
    subscriptions: set[str] = field(default_factory=set)
    queue: list[Message] = field(default_factory=list)
    connected: bool = False

    def subscribed_to(self, channel: str) -> bool:
        return any(channel_matches(p, channel) for p in self.subscriptions)


@dataclass(slots=True)
class Outcome:
    """What to do with one request.

    ``replies`` answer the request's messages in order. When ``hold`` is set, the connect reply
    (``replies[hold_index]``) must wait for an event, a disconnect or ``timeout_ms``; then call
    ``Bayeux.drain(client)`` and send queued events plus the replies. Otherwise send
    ``events + replies`` now.
    """

    replies: list[Message]
    events: list[Message] = field(default_factory=list)
    client: Client | None = None
    hold: bool = False
    hold_index: int = -1
    handshaken: Client | None = None
    disconnected: Client | None = None
    subscribed: bool = False


class Bayeux:
    """The pure server: clients, subscriptions, queues; every reply a value."""

    def __init__(
        self,
        *,
        timeout_ms: int,
        new_id: Callable[[], str],
        interval_ms: int = 0,
        connection_types: Iterable[str] = CONNECTION_TYPES,
    ) -> None:
        self.timeout_ms = timeout_ms
        self.interval_ms = interval_ms
        self.connection_types = tuple(connection_types)
        self._new_id = new_id
        self.clients: dict[str, Client] = {}

    @property
    def advice(self) -> Message:
        return {"reconnect": "retry", "interval": self.interval_ms, "timeout": self.timeout_ms}

    # -- requests

    def process(self, messages: list[Message], *, transport: str, owner: str | None) -> Outcome:
        """Answer one request's messages. ``owner`` names the session a handshake joins."""
        if any(m["channel"] == HANDSHAKE for m in messages):
            if len(messages) != 1:
                raise BayeuxError("a handshake must be alone in its request")
            if owner is None:
                raise BayeuxError("no session for this handshake", status=500)
            return self._handshake(messages[0], owner)
        outcome = Outcome(replies=[])
        for i, message in enumerate(messages):
            channel = message["channel"]
            client = self.clients.get(message.get("clientId") or "")
            if client is None:
                outcome.replies.append(self._unknown_client(message))
                continue
            outcome.client = client
            if channel == CONNECT:
                reply = self._reply(message, successful=True, clientId=client.client_id)
                reply["advice"] = self.advice
                advice = message.get("advice")
                wants_now = isinstance(advice, dict) and advice.get("timeout") == 0
                if len(messages) == 1 and client.connected and not wants_now and not client.queue:
                    outcome.hold = True
                    outcome.hold_index = i
                client.connected = True
                outcome.replies.append(reply)
            elif channel in (SUBSCRIBE, UNSUBSCRIBE):
                outcome.replies.append(self._subscription(message, client))
                outcome.subscribed = outcome.subscribed or channel == SUBSCRIBE
            elif channel == DISCONNECT:
                self.clients.pop(client.client_id, None)
                outcome.disconnected = client
                outcome.replies.append(self._reply(message, successful=True))
            elif is_meta(channel):
                outcome.replies.append(
                    self._reply(message, successful=False, error="400::Unknown meta channel")
                )
            else:
                # A publish from the client: acknowledged. Nothing in a replay listens to it.
                outcome.replies.append(self._reply(message, successful=True))
        if outcome.client is not None and not outcome.hold:
            outcome.events = self.drain(outcome.client)
        return outcome

    def _handshake(self, message: Message, owner: str) -> Outcome:
        offered = message.get("supportedConnectionTypes")
        offered_list = offered if isinstance(offered, list) else list(self.connection_types)
        # Only strings name a connection type (and other JSON values may not even hash).
        offered_types = {t for t in offered_list if isinstance(t, str)}
        if not offered_types & set(self.connection_types):
            reply = self._reply(
                message,
                successful=False,
                error="301::Connection types not supported",
                supportedConnectionTypes=list(self.connection_types),
            )
            reply["advice"] = {"reconnect": "none"}
            return Outcome(replies=[reply])
        client = Client(client_id=self._new_id(), owner=owner)
        self.clients[client.client_id] = client
        reply = self._reply(
            message,
            successful=True,
            clientId=client.client_id,
            version=BAYEUX_VERSION,
            minimumVersion=BAYEUX_VERSION,
            supportedConnectionTypes=list(self.connection_types),
        )
        reply["advice"] = self.advice
        return Outcome(replies=[reply], client=client, handshaken=client)

    def _subscription(self, message: Message, client: Client) -> Message:
        sub = message.get("subscription")
        raw = sub if isinstance(sub, list) else [sub]
        patterns = [p for p in raw if isinstance(p, str) and is_valid_channel(p, wildcards=True)]
        if not patterns or len(patterns) != len(raw):
            return self._reply(
                message, successful=False, error="405::Invalid channel", subscription=sub
            )
        if any(p == "/meta" or p.startswith("/meta/") for p in patterns):
            return self._reply(message, successful=False, error="403::Forbidden", subscription=sub)
        if message["channel"] == SUBSCRIBE:
            client.subscriptions.update(patterns)
        else:
            client.subscriptions.difference_update(patterns)
        return self._reply(message, successful=True, clientId=client.client_id, subscription=sub)

    def _unknown_client(self, message: Message) -> Message:
        reply = self._reply(message, successful=False, error="402::Unknown client")
        reply["advice"] = {"reconnect": "handshake", "interval": 0}
        return reply

    @staticmethod
    def _reply(message: Message, **fields: Any) -> Message:
        reply: Message = {"channel": message["channel"], **fields}
        if "id" in message:
            reply["id"] = message["id"]
        return reply

    # -- events

    def enqueue(self, client: Client, event: Message) -> None:
        """Queue an event for a client (the adapter decides which clients get which event)."""
        client.queue.append(event)

    @staticmethod
    def drain(client: Client) -> list[Message]:
        """Take the client's queued events."""
        events, client.queue = client.queue, []
        return events

    def end_held_connect(self, connect_reply: Message, *, disconnected: bool) -> Message:
        """The reply for a held connect that ended; after a disconnect, advise not to retry."""
        if disconnected:
            reply = dict(connect_reply)
            reply["advice"] = {**self.advice, "reconnect": "none"}
            return reply
        return connect_reply

    def forget(self, client_id: str) -> Client | None:
        """Drop a client that went away without a disconnect (its later messages get 402)."""
        return self.clients.pop(client_id, None)

    def drop_owner(self, owner: str) -> list[Client]:
        """Forget every client of a session (when the adapter drops the session)."""
        gone = [c for c in self.clients.values() if c.owner == owner]
        for c in gone:
            del self.clients[c.client_id]
        return gone
