"""The baselines of ``scripts/bench.py``: a bare aiohttp server that does the least work.

    python scripts/bench_floor.py --body FILE [--port 0] [--timeout 60]

Prints ``listening on http://HOST:PORT`` first, then serves until SIGINT/SIGTERM:

- ``GET /api/...`` (any path): FILE's bytes as ``application/json`` (the framework's limit for
  a replayed GET: no matching, no sessions); ``POST /api/...``: ``{"statusCode":0}``.
- A minimal Bayeux server at ``/api/v2/notifications`` (long-polling and WebSocket): handshake,
  subscribe and connect are acknowledged without checks; the first connect is answered at once,
  later ones are held until an event or ``--timeout`` seconds; over WebSocket each event is its
  own frame. The floor of what relay's replay does for a notification.
- ``POST /_floor/trigger/{clientId}`` with a Bayeux message as body: queue it for that client and
  answer ``{"statusCode":0}`` (one desktop's triggering request).
- ``POST /_floor/burst/{clientId}?n=K``: push K numbered events to that client (a notification
  stream for the recording benchmark).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import WSMsgType, web

BAYEUX = "/api/v2/notifications"
OK = b'{"statusCode":0}'


@dataclass
class Client:
    connected: bool = False
    queue: list[Any] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    ws: web.WebSocketResponse | None = None


class Floor:
    def __init__(self, body: bytes, timeout: float) -> None:
        self.body = body
        self.timeout = timeout
        self.clients: dict[str, Client] = {}
        self.ids = itertools.count(1)
        self.tasks: set[asyncio.Future[None]] = set()

    def push(self, cid: str, messages: list[Any]) -> bool:
        client = self.clients.get(cid)
        if client is None:
            return False
        if client.ws is not None:
            task = asyncio.ensure_future(_send_each(client.ws, messages))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        else:
            client.queue.extend(messages)
            client.wake.set()
        return True

    def process(
        self, messages: list[Any], ws: web.WebSocketResponse | None
    ) -> tuple[list[Any], Client | None]:
        """Replies, and the client whose connect is to be held (if any)."""
        replies: list[Any] = []
        hold: Client | None = None
        for m in messages:
            channel = m.get("channel")
            reply: dict[str, Any] = {"channel": channel, "successful": True}
            if "id" in m:
                reply["id"] = m["id"]
            if channel == "/meta/handshake":
                cid = f"f{next(self.ids)}"
                self.clients[cid] = Client(ws=ws)
                reply |= {
                    "clientId": cid,
                    "version": "1.0",
                    "supportedConnectionTypes": ["websocket", "long-polling"],
                    "advice": {"reconnect": "retry", "interval": 0, "timeout": self.timeout * 1000},
                }
            else:
                cid = m.get("clientId", "")
                reply["clientId"] = cid
                client = self.clients.get(cid)
                if client is None:
                    reply |= {"successful": False, "error": "402::Unknown client"}
                elif channel == "/meta/subscribe":
                    reply["subscription"] = m.get("subscription")
                elif channel == "/meta/connect":
                    if ws is not None:
                        client.ws = ws
                    if client.connected and len(messages) == 1 and not client.queue:
                        hold = client
                    client.connected = True
                elif channel == "/meta/disconnect":
                    self.clients.pop(cid, None)
            replies.append(reply)
        return replies, hold


FLOOR = web.AppKey("floor", Floor)


async def _send_each(ws: web.WebSocketResponse, messages: list[Any]) -> None:
    """Each event its own frame, in order (as relay and CometD servers push them)."""
    with contextlib.suppress(ConnectionError, RuntimeError):
        for m in messages:
            await ws.send_str(orjson.dumps([m]).decode())


async def rest(request: web.Request) -> web.Response:
    floor = request.app[FLOOR]
    if request.method == "GET":
        return web.Response(body=floor.body, content_type="application/json")
    await request.read()
    return web.Response(body=OK, content_type="application/json")


async def bayeux(request: web.Request) -> web.StreamResponse:
    floor = request.app[FLOOR]
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return await websocket(request)
    replies, hold = floor.process(orjson.loads(await request.read()), None)
    events: list[Any] = []
    if hold is not None:
        hold.wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(hold.wake.wait(), floor.timeout)
    for m in replies:
        client = floor.clients.get(m.get("clientId", ""))
        if client is not None and client.queue:
            events += client.queue
            client.queue = []
    return web.Response(body=orjson.dumps(events + replies), content_type="application/json")


async def websocket(request: web.Request) -> web.WebSocketResponse:
    floor = request.app[FLOOR]
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    held: asyncio.Task[None] | None = None

    async def answer_later(reply: list[Any]) -> None:
        await asyncio.sleep(floor.timeout)
        await ws.send_str(orjson.dumps(reply).decode())

    async for frame in ws:
        if frame.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            continue
        replies, hold = floor.process(orjson.loads(frame.data), ws)
        if hold is not None:
            if held is not None:
                held.cancel()
            held = asyncio.ensure_future(answer_later(replies))
        else:
            await ws.send_str(orjson.dumps(replies).decode())
    if held is not None:
        held.cancel()
    return ws


async def trigger(request: web.Request) -> web.Response:
    floor = request.app[FLOOR]
    message = orjson.loads(await request.read())
    found = floor.push(request.match_info["cid"], [message])
    return web.Response(status=200 if found else 404, body=OK, content_type="application/json")


async def burst(request: web.Request) -> web.Response:
    floor = request.app[FLOOR]
    n = int(request.query.get("n", "1"))
    events = [
        {"channel": "/v2/me/calls", "data": {"seq": i, "call": {"id": "B"}}} for i in range(n)
    ]
    found = floor.push(request.match_info["cid"], events)
    return web.Response(status=200 if found else 404, body=OK, content_type="application/json")


def create_app(body: bytes, timeout: float) -> web.Application:
    app = web.Application()
    app[FLOOR] = Floor(body, timeout)
    app.router.add_post("/_floor/trigger/{cid}", trigger)
    app.router.add_post("/_floor/burst/{cid}", burst)
    for path in (BAYEUX, BAYEUX + "/{tail:.*}"):
        app.router.add_route("GET", path, bayeux)
        app.router.add_route("POST", path, bayeux)
    app.router.add_route("*", "/{tail:.*}", rest)
    return app


async def main(args: argparse.Namespace) -> None:
    app = create_app(Path(args.body).read_bytes(), args.timeout)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port, backlog=4096)
    await site.start()
    host, port = runner.addresses[0][:2]
    print(f"listening on http://{host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--body", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=60.0)
    asyncio.run(main(parser.parse_args()))
    sys.exit(0)
