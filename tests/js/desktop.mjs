// An agent desktop for relay's tests, built on the official CometD client.
//
//   node tests/js/desktop.mjs --url http://localhost:PORT --transport long-polling|websocket
//        [--login] [--user agent --password secret] [--subscribe /v2/me/*]...
//        [--count N] [--destination 5001] [--deadline-ms 30000] [--no-ops]
//        [--max-handshake-failures 3]
//
// It handshakes at URL + /api/v2/notifications with the chosen transport only, subscribes
// (again after every re-handshake: the client drops subscriptions on each one) and prints one
// JSON line on stdout per event:
//   {"event":"subscribed","clientId":..}                subscribed, after every handshake
//   {"event":"ready"}                                   subscribed, the first time only
//   {"event":"notification","channel":..,"data":..}     every message received, once
//   {"event":"rest","method","path","body","status","response"}   every REST exchange
//   {"event":"done"}                                    N notifications seen, disconnected
// Unless --no-ops it acts like an agent doing a two-step transfer (GWS seed, Sample 2):
// Ringing -> Answer; Established (not a consult call) -> InitiateTransfer to --destination;
// Dialing of a Consult call -> CompleteTransfer on the consult call. Each operation is sent
// once only. Exit 0 after --count notifications (after waiting for the REST requests in flight
// and a clean /meta/disconnect); exit 1 with one "desktop: error: ..." line on stderr on the
// deadline, on a REST error (HTTP status not 2xx or a JSON statusCode other than 0), on a
// refused subscription, or after --max-handshake-failures failed handshakes in a row.
// Without --count it runs until SIGTERM/SIGINT (then disconnects and exits 0) or the deadline;
// --deadline-ms 0 disables the deadline.
//
// One cookie jar serves the whole desktop: REST (fetch), long-polling (the adapter's XHR, via
// its `cookies` hooks) and the WebSocket upgrade (the `ws` client's `headers` option; the
// adapter passes none, so window.WebSocket is replaced by a subclass). A replay server routes a
// desktop to its session by cookie, so the upgrade must carry the cookies that long-polling or
// REST responses set, and the other way round. Basic auth and, after --login, the CSRF token
// go on every request of every kind (REST, Bayeux POSTs and the WebSocket upgrade).

import { Console } from "node:console";
import process from "node:process";
import { parseArgs } from "node:util";

import { CometD } from "cometd";
import { adapt } from "cometd-nodejs-client";
import { WebSocket as WsWebSocket } from "ws";

const USAGE =
  "usage: node tests/js/desktop.mjs --url http://localhost:PORT " +
  "--transport long-polling|websocket [--login] [--user U --password P] " +
  "[--subscribe CHANNEL]... [--count N] [--destination 5001] [--deadline-ms 30000] [--no-ops] " +
  "[--max-handshake-failures 3]";

const BAYEUX_PATH = "/api/v2/notifications";

const stderr = new Console({ stdout: process.stderr, stderr: process.stderr });

function emit(obj) {
  // Writes to a pipe are synchronous on Linux, so nothing is lost at process.exit().
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function info(text) {
  process.stderr.write(`desktop: ${text}\n`);
}

function fail(text) {
  process.stderr.write(`desktop: error: ${text}\n`);
  process.exit(1);
}

// --- arguments ------------------------------------------------------------------------------

function parseOptions(argv) {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        url: { type: "string" },
        transport: { type: "string" },
        login: { type: "boolean", default: false },
        user: { type: "string" },
        password: { type: "string" },
        subscribe: { type: "string", multiple: true },
        count: { type: "string" },
        destination: { type: "string", default: "5001" },
        "deadline-ms": { type: "string", default: "30000" },
        "no-ops": { type: "boolean", default: false },
        "max-handshake-failures": { type: "string", default: "3" },
        help: { type: "boolean", default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    process.stderr.write(`desktop: error: ${e.message}\n${USAGE}\n`);
    process.exit(2);
  }
  if (values.help) {
    process.stdout.write(USAGE + "\n");
    process.exit(0);
  }
  const usage = (why) => {
    process.stderr.write(`desktop: error: ${why}\n${USAGE}\n`);
    process.exit(2);
  };
  if (!values.url) usage("--url is required");
  let base;
  try {
    base = new URL(values.url);
  } catch {
    usage(`--url ${values.url} is not a URL`);
  }
  if (!/^https?:$/.test(base.protocol)) usage("--url must be http:// or https://");
  if (!["long-polling", "websocket"].includes(values.transport)) {
    usage("--transport must be long-polling or websocket");
  }
  if ((values.user === undefined) !== (values.password === undefined)) {
    usage("--user and --password go together");
  }
  const integer = (name, raw, min) => {
    if (raw === undefined) return undefined;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min) usage(`--${name} must be an integer >= ${min}`);
    return n;
  };
  return {
    base: values.url.replace(/\/+$/, ""),
    transport: values.transport,
    login: values.login,
    user: values.user,
    password: values.password,
    channels: values.subscribe && values.subscribe.length ? values.subscribe : ["/v2/me/*"],
    count: integer("count", values.count, 1),
    destination: values.destination,
    deadlineMs: integer("deadline-ms", values["deadline-ms"], 0),
    ops: !values["no-ops"],
    maxHandshakeFailures: integer("max-handshake-failures", values["max-handshake-failures"], 1),
  };
}

// --- one cookie jar for the whole desktop ---------------------------------------------------

// The desktop talks to one origin, so the jar ignores Domain and Path (as the adapter's own
// jar does) and keeps name -> value; a cookie set with Max-Age<=0 or a past Expires is removed.
class CookieJar {
  #cookies = new Map();

  store(setCookie) {
    const [pair, ...attributes] = setCookie.split(";");
    const equal = pair.indexOf("=");
    if (equal <= 0) return;
    const name = pair.slice(0, equal).trim();
    const value = pair.slice(equal + 1).trim();
    let expired = false;
    for (const attribute of attributes) {
      const [k, ...v] = attribute.split("=");
      const key = k.trim().toLowerCase();
      const val = v.join("=").trim();
      if (key === "max-age" && Number(val) <= 0) expired = true;
      if (key === "expires" && Date.parse(val) < Date.now()) expired = true;
    }
    if (expired) this.#cookies.delete(name);
    else this.#cookies.set(name, value);
  }

  list() {
    return [...this.#cookies].map(([name, value]) => `${name}=${value}`);
  }

  header() {
    return this.list().join("; ");
  }
}

// --- the desktop ----------------------------------------------------------------------------

class Desktop {
  constructor(options) {
    this.o = options;
    this.jar = new CookieJar();
    this.csrf = null; // [headerName, token] after --login
    this.received = 0;
    this.seen = new WeakSet(); // messages already printed (several subscriptions may match)
    this.sent = new Set(); // "Operation call-id" already posted
    this.pending = new Set(); // REST promises in flight
    this.ready = false;
    this.finishing = false;
    this.handshakeFailures = 0;
    this.lastFailure = null;
  }

  // Headers every request carries: Basic auth and, once logged in, the CSRF token.
  commonHeaders() {
    const headers = {};
    if (this.o.user !== undefined) {
      const token = Buffer.from(`${this.o.user}:${this.o.password}`).toString("base64");
      headers.Authorization = `Basic ${token}`;
    }
    if (this.csrf) headers[this.csrf[0]] = this.csrf[1];
    return headers;
  }

  async rest(method, path, body) {
    const headers = { Accept: "application/json", ...this.commonHeaders() };
    const cookie = this.jar.header();
    if (cookie) headers.Cookie = cookie;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(this.o.base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      fail(`${method} ${path}: ${e.cause ? e.cause.message || e.cause.code : e.message}`);
    }
    for (const setCookie of response.headers.getSetCookie()) this.jar.store(setCookie);
    const text = await response.text();
    let parsed = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      // not JSON: keep the text
    }
    emit({
      event: "rest",
      method,
      path,
      body: body === undefined ? null : body,
      status: response.status,
      response: parsed,
    });
    const statusCode = parsed && typeof parsed === "object" ? parsed.statusCode : undefined;
    if (!response.ok || (statusCode !== undefined && statusCode !== 0)) {
      fail(`${method} ${path} answered HTTP ${response.status}: ${text.slice(0, 300)}`);
    }
    return { response, body: parsed };
  }

  async login() {
    const { response } = await this.rest("GET", "/api/v2/me?subresources=*");
    const name = response.headers.get("x-csrf-header");
    const token = name ? response.headers.get(name) : null;
    if (name && token) this.csrf = [name, token];
    else info("GET /api/v2/me gave no CSRF token (no X-CSRF-HEADER); POSTs go without one");
  }

  operation(callId, body) {
    const key = `${body.operationName} ${callId}`;
    if (this.sent.has(key) || this.finishing) return;
    this.sent.add(key);
    const path = `/api/v2/me/calls/${encodeURIComponent(callId)}`;
    const p = this.rest("POST", path, body).finally(() => this.pending.delete(p));
    this.pending.add(p);
  }

  // The two-step transfer of the GWS seed (Sample 2), driven by call state changes.
  act(message) {
    if (message.channel !== "/v2/me/calls") return;
    const data = message.data;
    if (!data || data.notificationType !== "StatusChange" || !data.call) return;
    const call = data.call;
    if (typeof call.id !== "string") return;
    if (call.state === "Ringing") {
      this.operation(call.id, { operationName: "Answer" });
    } else if (call.state === "Established" && call.callType !== "Consult") {
      this.operation(call.id, {
        operationName: "InitiateTransfer",
        destination: { phoneNumber: this.o.destination },
      });
    } else if (call.state === "Dialing" && call.callType === "Consult") {
      this.operation(call.id, { operationName: "CompleteTransfer" });
    }
  }

  onMessage(message) {
    // The client hands a "/**" subscription the replies on /meta/* channels too: not events.
    if (message.channel.startsWith("/meta/")) return;
    if (this.seen.has(message)) return;
    this.seen.add(message);
    emit({ event: "notification", channel: message.channel, data: message.data });
    if (this.finishing) return;
    this.received += 1;
    if (this.o.ops) this.act(message);
    if (this.o.count !== undefined && this.received >= this.o.count) this.finish();
  }

  setUpTransports() {
    const desktop = this;
    adapt({
      cookies: {
        storeCookie(uri, header, callback) {
          desktop.jar.store(header);
          callback();
        },
        retrieveCookies(context, uri, callback) {
          callback(null, desktop.jar.list());
        },
      },
    });
    // cometd logs through window.console; keep stdout for JSON lines only.
    global.window.console = stderr;
    // The adapter installs ws.WebSocket as is, so the upgrade would carry neither cookies nor
    // Authorization: add them, and keep the cookies the upgrade response sets.
    global.window.WebSocket = class DesktopWebSocket extends WsWebSocket {
      constructor(url, protocols) {
        const headers = desktop.commonHeaders();
        const cookie = desktop.jar.header();
        if (cookie) headers.Cookie = cookie;
        super(url, protocols, { headers });
        this.on("upgrade", (response) => {
          const setCookies = response.headers["set-cookie"] || [];
          for (const setCookie of [].concat(setCookies)) desktop.jar.store(setCookie);
        });
      }
    };
  }

  start() {
    this.setUpTransports();
    const cometd = (this.cometd = new CometD());
    for (const type of cometd.getTransportTypes()) {
      if (type !== this.o.transport) cometd.unregisterTransport(type);
    }
    cometd.configure({
      url: this.o.base + BAYEUX_PATH,
      logLevel: "warn",
      requestHeaders: this.commonHeaders(),
    });
    cometd.onListenerException = (exception, handle, isListener, message) => {
      fail(`exception in a listener for ${JSON.stringify(message)}: ${exception.stack}`);
    };
    // The client drops every subscription on (re-)handshake: subscribe in this listener.
    cometd.addListener("/meta/handshake", (reply) => {
      if (!reply.successful) {
        this.handshakeFailures += 1;
        this.lastFailure = describeFailure(reply);
        info(`handshake failed (${this.handshakeFailures}): ${this.lastFailure}`);
        if (this.handshakeFailures >= this.o.maxHandshakeFailures) {
          fail(`${this.handshakeFailures} handshakes failed; last: ${this.lastFailure}`);
        }
        return;
      }
      this.handshakeFailures = 0;
      if (this.ready) info(`re-handshake as ${reply.clientId}: subscribing again`);
      this.subscribe();
    });
    cometd.addListener("/meta/connect", (reply) => {
      if (!reply.successful && !this.finishing) {
        this.lastFailure = describeFailure(reply);
        info(`connect failed: ${this.lastFailure}`);
      }
    });
    cometd.handshake();
  }

  subscribe() {
    const cometd = this.cometd;
    let acknowledged = 0;
    cometd.batch(() => {
      for (const channel of this.o.channels) {
        cometd.subscribe(
          channel,
          (message) => this.onMessage(message),
          (reply) => {
            if (!reply.successful) {
              // A transport failure (reply.failure) ends in a re-handshake, which subscribes
              // again; a reply of the server's own is a refusal.
              if (reply.failure) {
                info(`subscription to ${channel} lost: ${describeFailure(reply)}`);
                return;
              }
              fail(`subscription to ${channel} refused: ${describeFailure(reply)}`);
            }
            acknowledged += 1;
            if (acknowledged === this.o.channels.length) {
              emit({ event: "subscribed", clientId: cometd.getClientId() });
              if (!this.ready) emit({ event: "ready" });
              this.ready = true;
            }
          },
        );
      }
    });
  }

  async finish() {
    if (this.finishing) return;
    this.finishing = true;
    while (this.pending.size) await Promise.allSettled([...this.pending]);
    const reply = await new Promise((resolve) => this.cometd.disconnect(resolve));
    if (!reply.successful) fail(`disconnect failed: ${describeFailure(reply)}`);
    emit({ event: "done" });
    // fetch and the adapter keep sockets alive: exit explicitly.
    process.exit(0);
  }
}

function describeFailure(reply) {
  const parts = [];
  if (reply.error) parts.push(reply.error);
  if (reply.failure) {
    const f = reply.failure;
    if (f.reason) parts.push(String(f.reason));
    if (f.httpCode) parts.push(`HTTP ${f.httpCode}`);
    if (f.exception) parts.push(String(f.exception.message || f.exception));
    if (f.connectionType) parts.push(`over ${f.connectionType}`);
  }
  return parts.length ? parts.join(", ") : JSON.stringify(reply).slice(0, 300);
}

async function main() {
  const options = parseOptions(process.argv.slice(2));
  const desktop = new Desktop(options);
  if (options.deadlineMs > 0) {
    setTimeout(() => {
      const count = options.count === undefined ? "" : ` of ${options.count}`;
      const status = desktop.cometd ? desktop.cometd.getStatus() : "not started";
      const last = desktop.lastFailure ? `, last failure: ${desktop.lastFailure}` : "";
      const stage = desktop.finishing ? ", while finishing" : desktop.ready ? "" : ", never ready";
      fail(
        `deadline of ${options.deadlineMs} ms passed: ${desktop.received}${count} notifications` +
          ` received (CometD ${status}${stage}${last})`,
      );
    }, options.deadlineMs);
  }
  for (const signal of ["SIGTERM", "SIGINT"]) {
    process.on(signal, () => {
      if (desktop.cometd) desktop.finish();
      else process.exit(0);
    });
  }
  // Only process.exit() ends the desktop; an emptied event loop would be a silent exit 0.
  process.on("beforeExit", () => fail("nothing left to wait for, yet not finished"));
  if (options.login) await desktop.login();
  desktop.start();
}

main().catch((e) => fail(e.stack || String(e)));
