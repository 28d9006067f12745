"""relay's benchmarks: ratios against baselines and peers run on the same machine, same run.

    python scripts/bench.py [--quick] [--only rest,fanout,record,cassette] [--reps N]
                            [--json bench.json]

Four benchmarks; in each, the compared systems run interleaved (A B C A B C ...), on loopback,
after one discarded warm-up round; every figure is the median of the repetitions with (min-max).
Absolute figures swing by 25 % between runs on a shared machine; the ratios hold.

1. rest: ``relay replay`` of a synthetic cassette of GET exchanges vs a bare aiohttp handler
   answering the same bytes (``scripts/bench_floor.py``) vs ``mitmdump --server-replay`` of the
   same exchange. ``wrk`` drives them: throughput at 10 connections, latency p50/p99 at 1;
   server CPU per request from /proc.
2. fanout: N desktops, each its own Bayeux session (long-polling, and WebSocket), each sends
   its own triggering request (relay: POST Answer in its replay session, which releases the
   Established notification); the figure is the time from that request to the notification's
   arrival at that desktop (p50, p99) and from the first request to the last arrival. Peers:
   faye 1.4 (``scripts/bench_faye.mjs``, one channel per desktop, one publish per desktop) and
   the floor (``scripts/bench_floor.py``: a bare aiohttp long-poll/WebSocket push). One raw
   asyncio client (aiohttp, JSON by hand) in this process drives all three.
3. record: REST through ``relay record`` vs plain ``mitmdump`` (reverse mode, no addon) vs
   ``mitmdump -w`` vs direct to the upstream: proxy CPU per request, throughput (c=10), latency
   (c=1), a WebSocket notification stream, and memory after 10,000 exchanges.
4. cassette: load, save, ``relay show`` and ``relay diff`` of 10,000-event cassettes, against
   orjson parsing and writing the same file (the floor of load and save).

Prints a table and writes JSON (default ``bench.json``). ``--quick`` runs everything small and
short (a test runs it so that it never rots); its figures mean nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
SEED = ROOT / "cassettes" / "two-step-transfer.json"
PY = sys.executable
#: How to run relay; BENCH_RELAY="..." measures another build, or relay under a profiler.
RELAY = shlex.split(os.environ.get("BENCH_RELAY", f"{PY} -m relay"))
#: BENCH_RELAY_B="...": a second relay build, added to the REST benchmark (A/B in one run).
RELAY_B = shlex.split(os.environ.get("BENCH_RELAY_B", ""))
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
BAYEUX = "/api/v2/notifications"
UPSTREAM = "http://gws.example:8080"  # the recorded server's origin in synthetic cassettes

sys.path.insert(0, str(ROOT))
from relay import cassette as cas  # noqa: E402


@dataclass(frozen=True)
class Config:
    quick: bool
    reps: int
    warmup: int  # discarded rounds before the measured ones
    wrk_seconds: int
    fanout: tuple[tuple[str, int], ...]  # (transport, N)
    record_exchanges: int
    record_notifications: int
    cassette_events: int


def config(quick: bool, reps: int | None) -> Config:
    if quick:
        return Config(
            quick=True,
            reps=reps or 1,
            warmup=0,
            wrk_seconds=1,
            fanout=(("long-polling", 10), ("websocket", 10)),
            record_exchanges=500,
            record_notifications=200,
            cassette_events=1000,
        )
    return Config(
        quick=False,
        reps=reps or 5,
        warmup=1,
        wrk_seconds=3,
        fanout=(
            ("long-polling", 10),
            ("long-polling", 100),
            ("long-polling", 1000),
            ("websocket", 10),
            ("websocket", 100),
            ("websocket", 1000),
            ("websocket", 5000),
        ),
        record_exchanges=10_000,
        record_notifications=2000,
        cassette_events=10_000,
    )


# --- processes and measures -----------------------------------------------------------------


def raise_open_files() -> int:
    """5000 WebSockets need more than the usual 1024 descriptors (here and in the servers)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 2**20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s: {proc.args!r}")


@dataclass
class Server:
    """A server subprocess: its base URL and pid."""

    name: str
    proc: subprocess.Popen[bytes]
    url: str

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def stop(self, timeout: float = 15) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def start(name: str, args: list[str], *, port: int | None = None) -> Server:
    """Start a server; its URL from its ``listening on`` line, or from ``port`` when given."""
    proc = subprocess.Popen(
        args,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if port is None else subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        if port is not None:
            wait_port(port, proc)
            return Server(name, proc, f"http://127.0.0.1:{port}")
        assert proc.stdout is not None
        line = _readline(proc, 30).decode().strip()
        if not line.startswith("listening on http://"):
            raise RuntimeError(f"{name} did not start: {line!r}")
        return Server(name, proc, line.removeprefix("listening on "))
    except BaseException:
        proc.kill()
        proc.wait()
        raise


def _readline(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    import selectors

    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise RuntimeError(f"{proc.args!r}: no output in {timeout}s")
    return proc.stdout.readline()


@contextlib.contextmanager
def servers(*started: Callable[[], Server]) -> Iterator[list[Server]]:
    """Start servers in order; stop every one of them on the way out, whatever happens."""
    running: list[Server] = []
    try:
        for make in started:
            running.append(make())
        yield running
    finally:
        for s in running:
            s.stop()


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[bytes, Any]:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as r:
        return r.read(), r.headers


# --- statistics -----------------------------------------------------------------------------


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of a non-empty list."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per metric: median (min-max) over the repetitions."""
    return {k: summary([r[k] for r in runs]) for k in runs[0]}


# --- wrk ------------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if m is None:
        raise ValueError(f"wrk: cannot read the duration {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(url: str, *, connections: int, seconds: int, cookie: str | None, server: Server) -> dict:
    """One wrk run; requests/s, latency p50/p99 (ms), errors, server CPU per request (us)."""
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    if cookie:
        args += ["-H", f"Cookie: {cookie}"]
    before = server.cpu()
    out = subprocess.run(
        [*args, url], capture_output=True, text=True, timeout=seconds + 30, check=True
    ).stdout
    cpu = server.cpu() - before
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    dist = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = int(non2xx.group(1)) if non2xx else 0
    errors += sum(int(g) for g in sock.groups()) if sock else 0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return {
        "rps": rps,
        "p50_ms": _ms(dist["50"]),
        "p99_ms": _ms(dist["99"]),
        "requests": requests,
        "errors": errors,
        "cpu_us_per_req": cpu / max(requests, 1) * 1e6,
    }


def interleave_wrk(
    systems: list[tuple[Server, str, str | None]], cfg: Config
) -> dict[str, dict[str, list[dict]]]:
    """Throughput (c=10) then latency (c=1) per system, interleaved, after a warm-up round.

    ``systems``: each server with the URL to load and the Cookie header to send (or None).
    """
    runs: dict[str, dict[str, list[dict]]] = {s.name: {"c10": [], "c1": []} for s, _, _ in systems}
    for rep in range(cfg.warmup + cfg.reps):
        for conns, key in ((10, "c10"), (1, "c1")):
            if rep < cfg.warmup and conns == 1:
                continue  # one warm-up run per system is enough
            for server, url, cookie in systems:
                r = wrk(
                    url, connections=conns, seconds=cfg.wrk_seconds, cookie=cookie, server=server
                )
                if rep >= cfg.warmup:
                    runs[server.name][key].append(r)
    return runs


def wrk_summary(runs: dict[str, list[dict]]) -> dict[str, Any]:
    c10, c1 = runs["c10"], runs["c1"]
    return {
        "throughput_rps": summary([r["rps"] for r in c10]),
        "cpu_us_per_req": summary([r["cpu_us_per_req"] for r in c10]),
        "p50_ms": summary([r["p50_ms"] for r in c1]),
        "p99_ms": summary([r["p99_ms"] for r in c1]),
        "requests": sum(r["requests"] for r in c10 + c1),
        "errors": sum(r["errors"] for r in c10 + c1),
        "runs": runs,  # every repetition, in the order run
    }


# --- synthetic cassettes --------------------------------------------------------------------


def _seed() -> cas.Cassette:
    return cas.load(SEED)


def _established(token: str) -> dict[str, Any]:
    """The seed's Established notification message, for call ``token``."""
    seed = _seed()
    n = next(
        e
        for e in seed.desktop().notifications()
        if isinstance(e.data, dict) and e.data.get("call", {}).get("state") == "Established"
    )
    text = orjson.dumps(n.message).decode()
    old = n.data["call"]["id"]
    text = text.replace(old, token).replace("http://127.0.0.1:8080", UPSTREAM)
    message: dict[str, Any] = orjson.loads(text)
    return message


def _user_body() -> dict[str, Any]:
    """A GET /api/v2/me answer of realistic size (about 1 KB)."""
    return {
        "statusCode": 0,
        "user": {
            "id": "2f5a6b1c9d8e4f7a8b6c5d4e3f2a1b0c",
            "userName": "agent1",
            "firstName": "Kristi",
            "lastName": "Sippola",
            "roles": ["ROLE_AGENT"],
            "enabled": True,
            "changePasswordOnFirstLogin": False,
            "uri": f"{UPSTREAM}/api/v2/users/2f5a6b1c9d8e4f7a8b6c5d4e3f2a1b0c",
            "path": "/users/2f5a6b1c9d8e4f7a8b6c5d4e3f2a1b0c",
            "devices": [
                {
                    "id": "efe1ab32-53f9-43ce-b65e-5768c61f7d4a",
                    "deviceState": "Active",
                    "userState": {"state": "Ready", "displayName": "Ready"},
                    "phoneNumber": "5005",
                    "e164Number": "5005",
                    "uri": f"{UPSTREAM}/api/v2/devices/efe1ab32-53f9-43ce-b65e-5768c61f7d4a",
                    "capabilities": ["ForwardCallsOn", "DoNotDisturbOn", "Logout"],
                }
            ],
            "channels": [{"name": n, "state": "Ready"} for n in ("voice", "chat", "email")],
            "settings": {"language": "en-US", "timeZone": "Europe/Paris", "wrapUpTime": 0},
        },
    }


def _json_headers() -> list[tuple[str, str]]:
    return [("Content-Type", "application/json")]


def rest_cassette() -> cas.Cassette:
    """GETs only: served any number of times in any order (what a load test can repeat)."""
    events: list[cas.Event] = []
    for i, path in enumerate(("/api/v2/me", "/api/v2/me/calls", "/api/v2/me/devices")):
        body = _user_body() if path == "/api/v2/me" else {"statusCode": 0, "items": []}
        events.append(
            cas.Exchange(
                id=f"x{i + 1}",
                at_ms=i * 100,
                response_ms=i * 100 + 5,
                request=cas.Request("GET", path, headers=[("Accept", "application/json")]),
                response=cas.Response(200, "OK", _json_headers(), cas.Body.json(body)),
            )
        )
    # One non-GET at the end: a cassette of GETs alone makes relay.timeline fail (its chain of
    # non-GET events is empty; reported to the lead). Never sent, so never consumed.
    logout = cas.Request("POST", "/api/v2/me", headers=_json_headers())
    logout.body = cas.Body.json({"operationName": "Logout"})
    ok = cas.Response(200, "OK", _json_headers(), cas.Body.json({"statusCode": 0}))
    events.append(cas.Exchange(id="x9", at_ms=1000, response_ms=1005, request=logout, response=ok))
    return cas.Cassette(
        meta=cas.Meta(title="bench: GETs", upstream=UPSTREAM),
        desktops=[cas.Desktop("agent", events)],
    )


def fanout_cassette(calls: int) -> cas.Cassette:
    """``calls`` times: POST Answer on call C<k>, which causes Established of C<k>."""
    events: list[cas.Event] = []
    for k in range(1, calls + 1):
        path = f"/api/v2/me/calls/C{k}"
        events.append(
            cas.Exchange(
                id=f"x{k}",
                at_ms=k * 1000,
                response_ms=k * 1000 + 50,
                request=cas.Request(
                    "POST",
                    path,
                    headers=_json_headers(),
                    body=cas.Body.json({"operationName": "Answer"}),
                ),
                response=cas.Response(200, "OK", _json_headers(), cas.Body.json({"statusCode": 0})),
            )
        )
        message = _established(f"C{k}")
        events.append(
            cas.Notification(
                id=f"n{k}",
                at_ms=k * 1000 + 100,
                channel=message["channel"],
                message=message,
                cause=f"x{k}",
            )
        )
    return cas.Cassette(
        meta=cas.Meta(title="bench: fan-out", upstream=UPSTREAM),
        desktops=[
            cas.Desktop(
                "agent",
                events,
                cas.BayeuxParams(advice={"interval": 0, "reconnect": "retry", "timeout": 60000}),
            )
        ],
    )


def big_cassette(events: int, *, variant: bool = False) -> cas.Cassette:
    """The seed's steps repeated to ``events`` events, as one long recorded shift.

    ``variant``: another recording of the same shift on another server build (other ids,
    timings, and every 50th call ends in another state), for ``relay diff``.
    """
    seed = _seed().desktop()
    out: list[cas.Event] = []
    k = 0
    while len(out) < events:
        k += 1
        shift = (k - 1) * 60_000 + (7 if variant else 0)
        text = orjson.dumps([cas._event_to_dict(e) for e in seed.events]).decode()
        call = "011DJV5JI898NB2L04000VTAES000005"
        text = text.replace(call, f"{'V' if variant else 'C'}{k:07d}{call[8:]}")
        raws = orjson.loads(text)
        for raw in raws:
            raw["id"] = f"{raw['id']}-{k}"
            if raw.get("cause"):
                raw["cause"] = f"{raw['cause']}-{k}"
            raw["at_ms"] += shift
            if raw.get("response_ms") is not None:
                raw["response_ms"] += shift + (3 if variant else 0)
            if variant and k % 50 == 0 and raw["type"] == "notification":
                data = raw["message"].get("data", {})
                if isinstance(data.get("call"), dict) and data["call"].get("state") == "Released":
                    data["call"]["state"] = "Abandoned"
            out.append(cas._event_from_dict(raw, "bench"))
            if len(out) == events:
                break
    return cas.Cassette(
        meta=cas.Meta(title=f"bench: {events} events", upstream="http://127.0.0.1:8080"),
        desktops=[cas.Desktop("agent", out)],
    )


# --- 1. REST replay -------------------------------------------------------------------------


def mitm_flows(path: Path, body: bytes, target: str) -> None:
    """A mitmproxy flow file holding one GET /api/v2/me exchange answering ``body``."""
    from mitmproxy import http, io
    from mitmproxy.test import tflow

    flow = tflow.tflow(resp=True)
    host, port = target.removeprefix("http://").split(":")
    flow.request = http.Request.make("GET", f"http://{host}:{port}/api/v2/me")
    flow.response = http.Response.make(200, body, {"Content-Type": "application/json"})
    with path.open("wb") as f:
        io.FlowWriter(f).add(flow)


def mitm_args(port: int, mode: str, *extra: str) -> list[str]:
    mitmdump = shutil.which("mitmdump") or "mitmdump"
    return [
        mitmdump,
        "-q",
        "--listen-host",
        "127.0.0.1",
        "--listen-port",
        str(port),
        "--mode",
        mode,
        "--set",
        "connection_strategy=lazy",
        *extra,
    ]


def _session_cookie(headers: Any) -> str:
    found = re.search(r"relay_session=([^;]+)", headers.get("Set-Cookie", ""))
    if found is None:
        raise RuntimeError("relay replay set no relay_session cookie")
    return f"relay_session={found.group(1)}"


def bench_rest(cfg: Config, tmp: Path) -> dict[str, Any]:
    path = tmp / "rest.json"
    cas.save(rest_cassette(), path)
    replay_args = ["replay", str(path), "--port", "0", "--speed", "0", "--quiet"]
    relay = start("relay replay", [*RELAY, *replay_args])
    with servers(lambda: relay) as running:
        body, headers = http_get(relay.url + "/api/v2/me")
        cookies = {relay.name: _session_cookie(headers)}
        if RELAY_B:  # another build of relay, measured in the same run
            running.append(start("relay replay (B)", [*RELAY_B, *replay_args]))
            cookies[running[-1].name] = _session_cookie(http_get(running[-1].url + "/api/v2/me")[1])
        (tmp / "body.json").write_bytes(body)
        mitm_flows(tmp / "rest.flows", body, "http://127.0.0.1:9")
        port = free_port()
        running.append(
            start(
                "bare aiohttp",
                [PY, str(SCRIPTS / "bench_floor.py"), "--body", str(tmp / "body.json")],
            )
        )
        running.append(
            start(
                "mitmdump --server-replay",
                mitm_args(
                    port,
                    "reverse:http://127.0.0.1:9",
                    "--server-replay",
                    str(tmp / "rest.flows"),
                    "--set",
                    "server_replay_reuse=true",
                    "--set",
                    "server_replay_refresh=false",
                    "--set",
                    "server_replay_extra=404",
                ),
                port=port,
            )
        )
        targets = [(s, s.url + "/api/v2/me", cookies.get(s.name)) for s in running]
        for s, url, cookie in targets:  # the same bytes from all of them
            got, _ = http_get(url, {"Cookie": cookie} if cookie else {})
            got = got.replace(s.url.encode(), relay.url.encode())  # B rewrites to its origin
            if got != body:
                raise RuntimeError(f"{s.name} answers other bytes than relay: {got[:80]!r}")
        runs = interleave_wrk(targets, cfg)
    result: dict[str, Any] = {name: wrk_summary(r) for name, r in runs.items()}
    relay_rps = result["relay replay"]["throughput_rps"]["median"]
    bare_rps = result["bare aiohttp"]["throughput_rps"]["median"]
    result["ratios"] = {
        "throughput_vs_bare": relay_rps / bare_rps,
        "throughput_vs_mitmdump": relay_rps
        / result["mitmdump --server-replay"]["throughput_rps"]["median"],
    }
    if "relay replay (B)" in result:
        b_rps = result["relay replay (B)"]["throughput_rps"]["median"]
        result["ratios"]["B_throughput_vs_bare"] = b_rps / bare_rps
    result["body_bytes"] = len(body)
    return result


# --- 2. fan-out -----------------------------------------------------------------------------


class RawConn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection (or, once upgraded, a WebSocket), by hand.

    The lean client of the fan-out benchmark: no per-request task, no cookie jar, no header
    objects; a response (or a frame) goes to ``on_message`` with the time it was complete, so
    that 5000 desktops in one process do not make the load generator the bottleneck.
    """

    def __init__(self, host: str) -> None:
        self.host = host
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.websocket = False
        self.pending: asyncio.Future[tuple[int, str, bytes]] | None = None
        self.on_message: Callable[[int, bytes, float], None] | None = None
        self.on_lost: Callable[[], None] | None = None

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self.buf:
            got = self._frame() if self.websocket else self._response()
            if got is None:
                return
            status, cookie, body = got
            now = time.perf_counter()
            if self.pending is not None and not self.pending.done():
                self.pending.set_result((status, cookie, body))
            elif self.on_message is not None:
                self.on_message(status, body, now)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.pending is not None and not self.pending.done():
            self.pending.set_exception(ConnectionError("connection lost"))
        if self.on_lost is not None:
            self.on_lost()

    # -- HTTP/1.1

    def _response(self) -> tuple[int, str, bytes] | None:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        lines = self.buf[:end].decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length, chunked, cookie = 0, False, ""
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                chunked = "chunked" in value.lower()
            elif name == "set-cookie" and value.strip().startswith("relay_session="):
                cookie = value.strip().split(";", 1)[0]
        start = end + 4
        if status == 101:
            del self.buf[:start]
            self.websocket = True
            return status, cookie, b""
        if chunked:
            body, pos = bytearray(), start
            while True:
                eol = self.buf.find(b"\r\n", pos)
                if eol < 0:
                    return None
                size = int(bytes(self.buf[pos:eol]).split(b";")[0], 16)
                if len(self.buf) < eol + 2 + size + 2:
                    return None
                body += self.buf[eol + 2 : eol + 2 + size]
                pos = eol + 2 + size + 2
                if size == 0:
                    break
            del self.buf[:pos]
            return status, cookie, bytes(body)
        if len(self.buf) < start + length:
            return None
        body = bytes(self.buf[start : start + length])
        del self.buf[: start + length]
        return status, cookie, body

    def send(self, method: str, path: str, body: bytes = b"", cookie: str = "") -> None:
        if self.transport is None:
            raise ConnectionError("connection closed")
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        )
        if cookie:
            head += f"Cookie: {cookie}\r\n"
        self.transport.write(head.encode() + b"\r\n" + body)

    async def call(
        self, method: str, path: str, body: bytes = b"", cookie: str = ""
    ) -> tuple[int, str, bytes]:
        self.pending = asyncio.get_running_loop().create_future()
        self.send(method, path, body, cookie)
        try:
            return await asyncio.wait_for(self.pending, 30)
        finally:
            self.pending = None

    # -- WebSocket (RFC 6455): text frames, masked with a zero key (legal, and no XOR to do)

    async def upgrade(self, path: str) -> str:
        """Switch to a WebSocket at ``path``; the relay_session cookie the server set, if any."""
        assert self.transport is not None
        key = base64.b64encode(os.urandom(16)).decode()
        self.pending = asyncio.get_running_loop().create_future()
        self.transport.write(
            f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        try:
            status, cookie, _ = await asyncio.wait_for(self.pending, 30)
        finally:
            self.pending = None
        if status != 101:
            raise ConnectionError(f"WebSocket upgrade answered {status}")
        return cookie

    def _frame(self) -> tuple[int, str, bytes] | None:
        buf = self.buf
        if len(buf) < 2:
            return None
        opcode, length, pos = buf[0] & 0x0F, buf[1] & 0x7F, 2
        if length == 126:
            if len(buf) < 4:
                return None
            length, pos = int.from_bytes(buf[2:4], "big"), 4
        elif length == 127:
            if len(buf) < 10:
                return None
            length, pos = int.from_bytes(buf[2:10], "big"), 10
        if len(buf) < pos + length:
            return None
        payload = bytes(buf[pos : pos + length])
        del buf[: pos + length]
        if opcode == 0x9:  # ping
            self._write_frame(0xA, payload)
            return None if not self.buf else self._frame()
        if opcode == 0x8:
            if self.transport is not None:
                self.transport.close()
            return None
        return opcode, "", payload

    def _write_frame(self, opcode: int, payload: bytes) -> None:
        if self.transport is None:
            raise ConnectionError("connection closed")
        n = len(payload)
        if n < 126:
            head = bytes((0x80 | opcode, 0x80 | n))
        elif n < 65536:
            head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
        else:
            head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
        self.transport.write(head + b"\0\0\0\0" + payload)

    def send_text(self, payload: bytes) -> None:
        self._write_frame(0x1, payload)

    async def receive(self) -> bytes:
        self.pending = asyncio.get_running_loop().create_future()
        try:
            return (await asyncio.wait_for(self.pending, 30))[2]
        finally:
            self.pending = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()


async def connect_raw(url: str) -> RawConn:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(lambda: RawConn(f"{host}:{port}"), host, int(port))
    return conn


@dataclass(eq=False)
class Desk:
    """One simulated desktop: its Bayeux session, its two connections, what it got."""

    index: int
    cookie: str = ""
    client_id: str = ""
    polls: int = 0
    bayeux: RawConn | None = None
    rest: RawConn | None = None
    got: dict[str, float] = field(default_factory=dict)
    sent: dict[str, float] = field(default_factory=dict)


@dataclass(eq=False)
class Burst:
    token: str
    expected: int
    arrived: int = 0
    answered: int = 0
    failed: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def check(self) -> None:
        if self.arrived >= self.expected and self.answered >= self.expected:
            self.done.set()


class FanoutSystem:
    """One system under the fan-out test: how its desktops subscribe and trigger."""

    def __init__(self, server: Server, kind: str, transport: str) -> None:
        self.server = server
        self.kind = kind
        self.transport = transport
        self.desks: list[Desk] = []
        self.burst: Burst | None = None
        self.errors = 0
        self.setup_s = 0.0
        self.closing = False

    @property
    def name(self) -> str:
        return self.server.name

    def subscription(self, desk: Desk) -> str:
        return f"/sess/{desk.index}" if self.kind == "faye" else "/v2/me/*"

    def trigger(self, desk: Desk, token: str) -> tuple[str, bytes]:
        """The desktop's own request that makes the server push it the token's notification."""
        if self.kind == "relay":
            return f"/api/v2/me/calls/{token}", b'{"operationName":"Answer"}'
        message = _established(token)
        if self.kind == "faye":
            body = {"channel": f"/sess/{desk.index}", "data": message["data"]}
            return "/_faye/trigger", orjson.dumps(body)
        return f"/_floor/trigger/{desk.client_id}", orjson.dumps(message)

    def arrived(self, desk: Desk, messages: list[Any], now: float) -> bool:
        """Note the events among ``messages``; False when the session was lost."""
        ok = True
        for m in messages:
            channel = m.get("channel", "")
            if not channel.startswith("/meta/"):
                data = m.get("data")
                call = data.get("call") if isinstance(data, dict) else None
                token = call.get("id") if isinstance(call, dict) else None
                burst = self.burst
                if burst is not None and token == burst.token and token not in desk.got:
                    desk.got[token] = now
                    burst.arrived += 1
                    burst.check()
            elif channel == "/meta/connect" and not m.get("successful", False):
                ok = False
        return ok

    # -- sessions

    async def open(self, n: int) -> None:
        gate = asyncio.Semaphore(50)
        t0 = time.perf_counter()

        async def one(i: int) -> None:
            async with gate:
                desk = Desk(i)
                await self._open(desk)
                self.desks.append(desk)

        await asyncio.gather(*(one(i) for i in range(n)))
        self.setup_s = time.perf_counter() - t0

    def _connect_message(self, desk: Desk) -> bytes:
        desk.polls += 1
        connect = {"channel": "/meta/connect", "clientId": desk.client_id, "id": f"c{desk.polls}"}
        connect["connectionType"] = self.transport
        return orjson.dumps([connect])

    async def _open(self, desk: Desk) -> None:
        hs = {"channel": "/meta/handshake", "version": "1.0", "id": "1"}
        hs["supportedConnectionTypes"] = [self.transport]
        conn = desk.bayeux = await connect_raw(self.server.url)
        websocket = self.transport == "websocket"
        if websocket:
            desk.cookie = await conn.upgrade(BAYEUX)
            conn.send_text(orjson.dumps([hs]))
            replies = orjson.loads(await conn.receive())
        else:
            _, desk.cookie, body = await conn.call(
                "POST", BAYEUX + "/handshake", orjson.dumps([hs])
            )
            replies = orjson.loads(body)
        desk.client_id = replies[0]["clientId"]
        sub = {"channel": "/meta/subscribe", "clientId": desk.client_id, "id": "2"}
        sub["subscription"] = self.subscription(desk)
        if websocket:
            conn.send_text(orjson.dumps([sub]))
            replies = orjson.loads(await conn.receive())
        else:
            replies = orjson.loads(
                (await conn.call("POST", BAYEUX, orjson.dumps([sub]), desk.cookie))[2]
            )
        if not any(r.get("successful") for r in replies if r.get("channel") == "/meta/subscribe"):
            raise RuntimeError(f"{self.name}: subscribe failed: {replies}")
        desk.rest = await connect_raw(self.server.url)
        desk.rest.on_message = lambda status, body, now: self._answered(status)
        conn.on_message = lambda status, body, now: self._polled(desk, status, body, now)
        conn.on_lost = lambda: self._lost()
        if websocket:
            conn.send_text(self._connect_message(desk))
        else:
            conn.send("POST", BAYEUX + "/connect", self._connect_message(desk), desk.cookie)

    def _polled(self, desk: Desk, status: int, body: bytes, now: float) -> None:
        """A long-poll answer or a WebSocket frame: note its events, connect again if due."""
        messages = orjson.loads(body)
        if not self.arrived(desk, messages, now) or status not in (1, 2, 200):
            self.errors += 1
            return
        assert desk.bayeux is not None
        if self.transport == "websocket":
            if any(m.get("channel") == "/meta/connect" for m in messages):
                desk.bayeux.send_text(self._connect_message(desk))
        else:
            desk.bayeux.send("POST", BAYEUX + "/connect", self._connect_message(desk), desk.cookie)

    def _answered(self, status: int) -> None:
        burst = self.burst
        if burst is not None:
            burst.answered += 1
            burst.failed += status != 200
            burst.check()

    def _lost(self) -> None:
        if not self.closing:
            self.errors += 1

    async def close(self) -> None:
        self.closing = True
        self.burst = None
        for desk in self.desks:
            for conn in (desk.bayeux, desk.rest):
                if conn is not None:
                    conn.close()
        self.desks = []
        await asyncio.sleep(0.1)
        self.closing = False

    # -- one measured burst

    async def fire(self, token: str, timeout: float) -> dict:
        """Every desktop sends its trigger at once; wait for every notification."""
        burst = self.burst = Burst(token, len(self.desks))
        cpu0 = self.server.cpu()
        start = time.perf_counter()
        for desk in self.desks:
            path, body = self.trigger(desk, token)
            assert desk.rest is not None
            desk.sent[token] = time.perf_counter()
            try:
                desk.rest.send("POST", path, body, desk.cookie)
            except ConnectionError:
                burst.failed += 1
                burst.answered += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(burst.done.wait(), timeout)
        cpu = self.server.cpu() - cpu0
        lat = [(d.got[token] - d.sent[token]) * 1e3 for d in self.desks if token in d.got]
        last = max((d.got[token] for d in self.desks if token in d.got), default=start)
        self.burst = None
        return {
            "p50_ms": pct(lat, 50) if lat else float("nan"),
            "p99_ms": pct(lat, 99) if lat else float("nan"),
            "last_ms": (last - start) * 1e3,
            "missed": len(self.desks) - len(lat),
            "failed_triggers": burst.failed + (len(self.desks) - burst.answered),
            "cpu_us_per_desk": cpu / len(self.desks) * 1e6,
        }


async def fanout_group(
    cfg: Config, transport: str, n: int, made: list[tuple[Server, str]]
) -> dict[str, Any]:
    systems = [FanoutSystem(server, kind, transport) for server, kind in made]
    runs: dict[str, list[dict]] = {s.name: [] for s in systems}
    # Each desktop holds two sockets. When the three systems' desktops do not fit in the open
    # file limit at once (5000 desktops), each round opens and closes one system's desktops.
    fresh = 2 * n * len(systems) + 1000 > resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    settle = 0.5 + n / 2000  # every desk's connect held before the burst
    timeout = 10 + n / 100
    setup: dict[str, list[float]] = {s.name: [] for s in systems}
    try:
        if not fresh:
            for s in systems:
                await s.open(n)
                setup[s.name].append(s.setup_s)
            await asyncio.sleep(settle)
        for rep in range(cfg.warmup + cfg.reps):
            for s in systems:
                if fresh:
                    await s.open(n)
                    setup[s.name].append(s.setup_s)
                    await asyncio.sleep(settle)
                # A fresh relay session expects the cassette's first call again.
                r = await s.fire("C1" if fresh else f"C{rep + 1}", timeout)
                if rep >= cfg.warmup:
                    runs[s.name].append(r)
                if fresh:
                    await s.close()
                else:
                    await asyncio.sleep(0.2 + n / 5000)  # connects held again
    finally:
        for s in systems:
            await s.close()
    out: dict[str, Any] = {}
    for s in systems:
        r = runs[s.name]
        keys = ("p50_ms", "p99_ms", "last_ms", "cpu_us_per_desk")
        out[s.name] = {
            **{k: summary([x[k] for x in r]) for k in keys},
            "missed": sum(x["missed"] for x in r),
            "failed_triggers": sum(x["failed_triggers"] for x in r),
            "session_errors": s.errors,
            "setup_s": round(statistics.median(setup[s.name]), 2),
            "fresh_sessions_each_round": fresh,
            "runs": r,
        }
    return out


def bench_fanout(cfg: Config, tmp: Path) -> dict[str, Any]:
    path = tmp / "fanout.json"
    cas.save(fanout_cassette(cfg.warmup + cfg.reps), path)
    (tmp / "empty.json").write_bytes(b"{}")
    node = shutil.which("node") or "node"
    results: dict[str, Any] = {}
    for transport, n in cfg.fanout:
        with servers(
            lambda: start(
                "floor", [PY, str(SCRIPTS / "bench_floor.py"), "--body", str(tmp / "empty.json")]
            ),
            lambda: start(
                "relay replay",
                [
                    *RELAY,
                    "replay",
                    str(path),
                    "--port",
                    "0",
                    "--speed",
                    "0",
                    "--quiet",
                    "--timeout",
                    "60000",
                ],
            ),
            lambda: start("faye", [node, str(SCRIPTS / "bench_faye.mjs"), "--timeout", "60"]),
        ) as running:
            made = list(zip(running, ("floor", "relay", "faye"), strict=True))
            group = asyncio.run(fanout_group(cfg, transport, n, made))
        relay, floor, faye = group["relay replay"], group["floor"], group["faye"]
        group["ratios"] = {
            "p99_vs_floor": relay["p99_ms"]["median"] / floor["p99_ms"]["median"],
            "p99_vs_faye": relay["p99_ms"]["median"] / faye["p99_ms"]["median"],
            "last_vs_faye": relay["last_ms"]["median"] / faye["last_ms"]["median"],
        }
        results[f"{transport} N={n}"] = group
        print(
            f"  fanout {transport} N={n}: relay p99 {relay['p99_ms']['median']:.1f} ms",
            file=sys.stderr,
        )
    return results


# --- 3. recording overhead ------------------------------------------------------------------


async def notification_stream(base: str, k: int, server: Server) -> dict[str, float]:
    """One WebSocket desktop through the proxy; the upstream pushes ``k`` events at once."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        ws = await http.ws_connect(base.replace("http", "ws", 1) + BAYEUX)
        await ws.send_str(
            orjson.dumps(
                [
                    {
                        "channel": "/meta/handshake",
                        "version": "1.0",
                        "id": "1",
                        "supportedConnectionTypes": ["websocket"],
                    }
                ]
            ).decode()
        )
        cid = orjson.loads((await ws.receive(10)).data)[0]["clientId"]
        sub = {"channel": "/meta/subscribe", "clientId": cid, "subscription": "/v2/me/*", "id": "2"}
        await ws.send_str(orjson.dumps([sub]).decode())
        await ws.receive(10)
        cpu0 = server.cpu()
        t0 = time.perf_counter()
        async with http.post(f"{base}/_floor/burst/{cid}?n={k}") as r:
            await r.read()
        got = 0
        while got < k:
            frame = await ws.receive(30)
            if frame.type != aiohttp.WSMsgType.TEXT:
                break
            got += sum(1 for m in orjson.loads(frame.data) if "seq" in (m.get("data") or {}))
        elapsed = time.perf_counter() - t0
        cpu = server.cpu() - cpu0
        await ws.close()
    return {
        "notifications_per_s": got / elapsed,
        "cpu_us_per_notification": cpu / max(got, 1) * 1e6,
        "missed": k - got,
    }


def bench_record(cfg: Config, tmp: Path) -> dict[str, Any]:
    cas_rest = tmp / "rec-rest.json"
    cas.save(rest_cassette(), cas_rest)
    body = orjson.dumps(_user_body())
    (tmp / "up-body.json").write_bytes(body)
    results: dict[str, Any] = {}
    with servers(
        lambda: start(
            "direct", [PY, str(SCRIPTS / "bench_floor.py"), "--body", str(tmp / "up-body.json")]
        )
    ) as (up,):
        target = f"reverse:{up.url}"
        p1, p2 = free_port(), free_port()
        out = tmp / "recorded.json"
        with servers(
            lambda: start("mitmdump", mitm_args(p1, target), port=p1),
            lambda: start(
                "mitmdump -w", mitm_args(p2, target, "-w", str(tmp / "mitm.flows")), port=p2
            ),
            lambda: start(
                "relay record",
                [
                    *RELAY,
                    "record",
                    "--upstream",
                    up.url,
                    "-o",
                    str(out),
                    "--port",
                    "0",
                    "-q",
                ],
            ),
        ) as proxies:
            systems = [up, *proxies]
            for s in systems:  # the same bytes through every path
                got, _ = http_get(s.url + "/api/v2/me")
                if got != body:
                    raise RuntimeError(f"{s.name} answers other bytes: {got[:80]!r}")
            mem0 = {s.name: rss_mb(s.pid) for s in proxies}
            runs = interleave_wrk([(s, s.url + "/api/v2/me", None) for s in systems], cfg)
            streams: dict[str, list[dict]] = {s.name: [] for s in systems}
            for rep in range(cfg.warmup + cfg.reps):
                for s in systems:
                    r = asyncio.run(notification_stream(s.url, cfg.record_notifications, s))
                    if rep >= cfg.warmup:
                        streams[s.name].append(r)
            # Top every proxy up to the same number of exchanges, then read its memory.
            sent = {s.name: wrk_summary(runs[s.name])["requests"] for s in proxies}
            for s in proxies:
                for _ in range(120):  # bounded: a proxy that answers nothing stops here
                    if sent[s.name] >= cfg.record_exchanges:
                        break
                    r = wrk(s.url + "/api/v2/me", connections=10, seconds=1, cookie=None, server=s)
                    sent[s.name] += r["requests"]
            mem1 = {s.name: rss_mb(s.pid) for s in proxies}
            relay = proxies[2]
            t0 = time.perf_counter()
            relay.stop(timeout=300)
            finish_s = time.perf_counter() - t0
        for s in systems:
            res = wrk_summary(runs[s.name])
            res["notifications"] = summarize(streams[s.name])
            res["notifications"]["missed"] = sum(x["missed"] for x in streams[s.name])
            res["notifications"]["runs"] = streams[s.name]
            if s.name in mem0:
                res["memory_mb"] = {
                    "after_warmup": round(mem0[s.name], 1),
                    "after_exchanges": round(mem1[s.name], 1),
                    "exchanges": sent[s.name],
                    "growth_mb": round(mem1[s.name] - mem0[s.name], 1),
                }
            results[s.name] = res
    recorded = cas.load(out)
    results["relay record"]["cassette"] = {
        "exchanges": sum(1 for _ in recorded.desktop().exchanges()),
        "notifications": sum(1 for _ in recorded.desktop().notifications()),
        "finish_s": round(finish_s, 2),
        "bytes": out.stat().st_size,
    }
    rr, md = results["relay record"], results["mitmdump"]
    results["ratios"] = {
        "cpu_vs_mitmdump": rr["cpu_us_per_req"]["median"] / md["cpu_us_per_req"]["median"],
        "p50_vs_mitmdump": rr["p50_ms"]["median"] / md["p50_ms"]["median"],
        "throughput_vs_mitmdump": rr["throughput_rps"]["median"] / md["throughput_rps"]["median"],
        "notification_cpu_vs_mitmdump": rr["notifications"]["cpu_us_per_notification"]["median"]
        / md["notifications"]["cpu_us_per_notification"]["median"],
    }
    return results


# --- 4. cassettes ---------------------------------------------------------------------------


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _run(*args: str) -> Callable[[], Any]:
    def run() -> None:
        r = subprocess.run([*RELAY, *args], capture_output=True, timeout=120, cwd=ROOT)
        if r.returncode not in (0, 1):
            raise RuntimeError(f"relay {' '.join(args)}: exit {r.returncode}: {r.stderr[-300:]!r}")

    return run


def bench_cassette(cfg: Config, tmp: Path) -> dict[str, Any]:
    from relay import diff as diff_core
    from relay import show
    from relay.html import page as html_page

    a, b = tmp / "big-a.json", tmp / "big-b.json"
    cas.save(big_cassette(cfg.cassette_events), a)
    cas.save(big_cassette(cfg.cassette_events, variant=True), b)
    data = a.read_bytes()
    loaded = cas.load(a)
    raw = orjson.loads(data)
    other = cas.load(b)
    options = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
    ops: dict[str, Callable[[], Any]] = {
        "orjson.loads (floor)": lambda: orjson.loads(a.read_bytes()),
        "load": lambda: cas.load(a),
        "orjson.dumps (floor)": lambda: cas.write_atomic(
            tmp / "raw-out.json", orjson.dumps(raw, option=options)
        ),
        "save": lambda: cas.save(loaded, tmp / "out.json"),
        "show (render)": lambda: show.render(loaded),
        "show --html (page)": lambda: html_page(loaded),
        "relay show (command)": _run("show", str(a)),
        "diff (core)": lambda: diff_core.diff(loaded, other),
        "relay diff (command)": _run("diff", str(a), str(b)),
        "relay --help (interpreter start)": _run("--help"),
    }
    runs: dict[str, list[float]] = {k: [] for k in ops}
    for rep in range(cfg.warmup + cfg.reps):
        for name, op in ops.items():
            t = _timed(op)
            if rep >= cfg.warmup:
                runs[name].append(t)
    result: dict[str, Any] = {name: summary(v) for name, v in runs.items()}
    result["runs"] = runs
    result["events"] = cfg.cassette_events
    result["bytes"] = len(data)
    result["ratios"] = {
        "load_vs_orjson": result["load"]["median"] / result["orjson.loads (floor)"]["median"],
        "save_vs_orjson": result["save"]["median"] / result["orjson.dumps (floor)"]["median"],
    }
    return result


# --- report ---------------------------------------------------------------------------------


def fmt(s: dict[str, float], scale: float = 1.0, digits: int = 1) -> str:
    m, lo, hi = s["median"] * scale, s["min"] * scale, s["max"] * scale
    return f"{m:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"


def targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue 6 with the figure measured and whether it is met."""
    out: list[dict[str, Any]] = []

    def add(name: str, value: float, limit: str, met: bool) -> None:
        out.append({"target": name, "value": round(value, 3), "limit": limit, "met": bool(met)})

    if "rest" in res:
        r = res["rest"]["ratios"]
        add(
            "replay REST throughput / bare aiohttp",
            r["throughput_vs_bare"],
            ">= 0.7",
            r["throughput_vs_bare"] >= 0.7,
        )
        add(
            "replay REST throughput / mitmdump server replay",
            r["throughput_vs_mitmdump"],
            ">= 10",
            r["throughput_vs_mitmdump"] >= 10,
        )
    if "fanout" in res:
        for group, g in res["fanout"].items():
            add(
                f"fan-out {group}: relay p99 / floor p99",
                g["ratios"]["p99_vs_floor"],
                "<= 2",
                g["ratios"]["p99_vs_floor"] <= 2,
            )
            add(
                f"fan-out {group}: relay p99 / faye p99",
                g["ratios"]["p99_vs_faye"],
                "< 1",
                g["ratios"]["p99_vs_faye"] < 1,
            )
            relay = g["relay replay"]
            if group == "long-polling N=1000":
                add(
                    "fan-out 1000 long-polling: relay p99 (ms)",
                    relay["p99_ms"]["median"],
                    "< 100",
                    relay["p99_ms"]["median"] < 100,
                )
            if group.startswith("websocket N=5000"):
                errors = relay["missed"] + relay["failed_triggers"] + relay["session_errors"]
                add("fan-out 5000 WebSocket: relay errors", errors, "== 0", errors == 0)
    if "record" in res:
        r = res["record"]["ratios"]
        add(
            "record CPU per request / plain mitmdump",
            r["cpu_vs_mitmdump"],
            "<= 1.15",
            r["cpu_vs_mitmdump"] <= 1.15,
        )
        add(
            "record p50 latency (c=1) / plain mitmdump",
            r["p50_vs_mitmdump"],
            "<= 1.15",
            r["p50_vs_mitmdump"] <= 1.15,
        )
        mem = res["record"]["relay record"]["memory_mb"]
        add(
            f"record memory growth over {mem['exchanges']} exchanges (MB)",
            mem["growth_mb"],
            "<= 10",
            mem["growth_mb"] <= 10,
        )
    if "cassette" in res:
        c = res["cassette"]
        add(
            f"load of a {c['events']}-event cassette (s)",
            c["load"]["median"],
            "< 0.5",
            c["load"]["median"] < 0.5,
        )
        add(
            f"relay diff of two {c['events']}-event cassettes (s)",
            c["relay diff (command)"]["median"],
            "< 2",
            c["relay diff (command)"]["median"] < 2,
        )
    return out


def _cols(cells: list[str], widths: list[int]) -> str:
    return "   " + " ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)).rstrip()


def table(res: dict[str, Any]) -> list[str]:
    """The results as a plain-text table: median (min-max) over the repetitions."""
    lines: list[str] = []
    if "rest" in res:
        r = res["rest"]
        w = [26, 22, 20, 20, 16, 6]
        lines += ["", f"1. REST replay: GET of a {r['body_bytes']}-byte JSON answer (wrk)"]
        lines.append(_cols(["system", "req/s c=10", "p50 ms c=1", "p99 ms c=1", "CPU us/req"], w))
        names = ("relay replay", "relay replay (B)", "bare aiohttp", "mitmdump --server-replay")
        for name in (n for n in names if n in r):
            s = r[name]
            cells = [name, fmt(s["throughput_rps"], digits=0), fmt(s["p50_ms"], digits=3)]
            cells += [fmt(s["p99_ms"], digits=3), fmt(s["cpu_us_per_req"], digits=0)]
            lines.append(_cols([*cells, f"errors {s['errors']}"], w))
        q = r["ratios"]
        lines.append(
            f"   throughput: relay / bare aiohttp {q['throughput_vs_bare']:.2f}, "
            f"relay / mitmdump {q['throughput_vs_mitmdump']:.1f}x"
        )
        if "B_throughput_vs_bare" in q:
            lines.append(f"   throughput: relay (B) / bare aiohttp {q['B_throughput_vs_bare']:.2f}")
    if "fanout" in res:
        w = [21, 13, 21, 21, 21, 14, 6]
        lines += ["", "2. Notification fan-out: each desktop's request -> its notification (ms)"]
        lines.append(_cols(["group", "system", "p50", "p99", "last", "CPU us/desk"], w))
        for group, g in res["fanout"].items():
            for name in ("relay replay", "floor", "faye"):
                s = g[name]
                errors = s["missed"] + s["failed_triggers"] + s["session_errors"]
                cells = [group, name, fmt(s["p50_ms"]), fmt(s["p99_ms"]), fmt(s["last_ms"])]
                lines.append(_cols([*cells, fmt(s["cpu_us_per_desk"], digits=0), str(errors)], w))
            q = g["ratios"]
            lines.append(
                f"   {group:<21} relay p99 / floor {q['p99_vs_floor']:.2f}, "
                f"/ faye {q['p99_vs_faye']:.2f}; last / faye {q['last_vs_faye']:.2f}"
            )
    if "record" in res:
        r = res["record"]
        w = [13, 17, 20, 22, 22, 20, 15, 20]
        lines += ["", "3. Recording overhead: GETs (wrk) and a WebSocket notification stream"]
        head = ["system", "CPU us/req", "req/s c=10", "p50 ms c=1", "p99 ms c=1", "notif/s"]
        lines.append(_cols([*head, "CPU us/notif", "RSS MB (exchanges)"], w))
        for name in ("direct", "mitmdump", "mitmdump -w", "relay record"):
            s, n = r[name], r[name]["notifications"]
            mem = s.get("memory_mb")
            memtext = (
                f"{mem['after_warmup']}->{mem['after_exchanges']} ({mem['exchanges']})"
                if mem
                else "-"
            )
            cells = [name, fmt(s["cpu_us_per_req"], digits=0), fmt(s["throughput_rps"], digits=0)]
            cells += [fmt(s["p50_ms"], digits=3), fmt(s["p99_ms"], digits=3)]
            cells += [fmt(n["notifications_per_s"], digits=0)]
            cells += [fmt(n["cpu_us_per_notification"], digits=0), memtext]
            lines.append(_cols(cells, w))
        q = r["ratios"]
        lines.append(
            f"   relay record / mitmdump: CPU/req {q['cpu_vs_mitmdump']:.2f}, "
            f"p50 {q['p50_vs_mitmdump']:.2f}, throughput {q['throughput_vs_mitmdump']:.2f}, "
            f"CPU/notification {q['notification_cpu_vs_mitmdump']:.2f}"
        )
    if "cassette" in res:
        c = res["cassette"]
        mb = c["bytes"] / 2**20
        lines += ["", f"4. Cassettes of {c['events']} events ({mb:.1f} MB): seconds"]
        for name, s in c.items():
            if isinstance(s, dict) and "median" in s:
                lines.append(f"   {name:<34} {fmt(s, digits=3)}")
    if "targets" in res:
        lines += ["", "Targets"]
        for t in res["targets"]:
            met = "met " if t["met"] else "MISS"
            lines.append(f"   {met}  {t['target']}: {t['value']} (target {t['limit']})")
    return lines


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg": os.getloadavg(),
    }


SECTIONS: dict[str, Callable[[Config, Path], dict[str, Any]]] = {
    "rest": bench_rest,
    "fanout": bench_fanout,
    "record": bench_record,
    "cassette": bench_cassette,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="relay's benchmarks (see the module docstring).")
    parser.add_argument("--quick", action="store_true", help="small and short: checks it runs")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 5; quick 1)")
    parser.add_argument("--json", default="bench.json", help="where to write the results")
    parser.add_argument(
        "--fanout", default=None, help="fan-out groups, e.g. long-polling:1000,websocket:5000"
    )
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(chosen) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    missing = [
        what
        for what, needed_by, present in (
            ("wrk (apt-get install wrk)", {"rest", "record"}, shutil.which("wrk")),
            ("mitmdump (pip install -e '.[test]')", {"rest", "record"}, shutil.which("mitmdump")),
            ("node (apt-get install nodejs)", {"fanout"}, shutil.which("node")),
            ("faye (npm ci in the checkout)", {"fanout"}, (ROOT / "node_modules/faye").is_dir()),
        )
        if needed_by & set(chosen) and not present
    ]
    if missing:
        parser.error("missing: " + ", ".join(missing))
    cfg = config(args.quick, args.reps)
    if args.fanout:
        groups = [g.split(":") for g in args.fanout.split(",")]
        cfg = dataclasses.replace(cfg, fanout=tuple((t, int(n)) for t, n in groups))
    res: dict[str, Any] = {
        "quick": cfg.quick,
        "reps": cfg.reps,
        "open_files": raise_open_files(),
        "machine": machine(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        for name in chosen:
            t = time.perf_counter()
            print(f"running {name} ...", file=sys.stderr, flush=True)
            try:
                res[name] = SECTIONS[name](cfg, Path(tmp))
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                print(f"bench: {name} failed: {e}", file=sys.stderr)
                return 1
            print(f"  {name} done in {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    res["targets"] = targets(res)
    print("\n".join(table(res)))
    Path(args.json).write_text(json.dumps(res, indent=2, sort_keys=True, default=str) + "\n")
    print(f"\n{res['seconds']} s; results in {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
