// A fake Genesys Web Services server for relay's tests: node's http plus faye 1.4 (a real
// Bayeux server), playing the upstream's part of a cassette.
//
//   node tests/js/upstream.mjs --port 0 --cassette cassettes/two-step-transfer.json
//        [--host 127.0.0.1] [--user agent --password secret] [--timeout SECONDS] [--ui DIR]
//
// The first stdout line is `listening on http://HOST:PORT`; then one JSON line per request:
//   {"event":"request","method","path","status","user","cookies","session","csrf","websocket"}
// (`cookies` the names of the cookies it carried, `session` its JSESSIONID, `csrf` whether it
// carried that session's CSRF token), printed when the answer is complete (a held long poll:
// when released; a WebSocket upgrade: when accepted, status 101).
//
// Like GWS:
// - HTTP Basic on every /api/v2 request, the Bayeux endpoint and its WebSocket upgrade
//   included, else 401. With --user/--password the credentials must match; without, any.
// - GET /api/v2/me answers {"statusCode":0,"user":{..}} (the cassette's recorded body when it
//   has one), sets a JSESSIONID cookie and sends X-CSRF-HEADER: X-CSRF-TOKEN and
//   X-CSRF-TOKEN: <uuid>. The token belongs to that session (as in Spring Security): every
//   POST/PUT/DELETE under /api/v2 must carry the JSESSIONID cookie and its token, else 403
//   {"statusCode":3,"statusMessage":"Missing or invalid Csrf token"}. The Bayeux endpoint is
//   exempt (its requests are the CometD client's own).
// - CometD (faye) at /api/v2/notifications: long-polling, WebSocket, callback-polling (JSONP).
//   --timeout is faye's long-poll hold, in seconds (default 30). A Bayeux response (and the
//   WebSocket 101) sets a BAYEUX_BROWSER cookie, as CometD servers do, when none was sent.
// - POST /api/v2/me/calls/{id} {"operationName": X}: the cassette's exchange with that path and
//   operationName (the first not used yet, else the last) gives the answer; the notifications
//   whose cause is that exchange are published in order on their channels, the first BEFORE
//   the HTTP answer is sent and the rest after it, as GWS does. Any other request under /api/v2
//   is answered from the cassette's exchange of the same method and path; unknown operation:
//   400 {"statusCode":1,..}; unknown path: 404 {"statusCode":6,..}.
//
// Test hooks outside /api/v2, without auth:
// - POST /test/ring: publishes the cassette's unsolicited notifications (cause null) that come
//   before its first operation (exchange with an operationName; else before its first
//   exchange), in order; answers {"published": N}.
// - POST /test/publish {"channel": .., "data": ..}: publishes one message.
// - GET /test/ping?ANYTHING: {"pong": true}; once its line is out, so are the lines of every
//   request answered before it.
// - POST /test/forget: the next /meta/connect reply to every client connected so far is
//   {"successful":false,"error":"402::Unknown client","advice":{"reconnect":"handshake"}}
//   (what GWS answers for a lost session), so clients re-handshake (a connect is held up to
//   --timeout seconds, so use a short one); answers {"forgotten": N}.
// - GET /ui/PATH (with --ui DIR): static files from DIR with Content-Type, ETag and
//   Last-Modified; 304 to a matching If-None-Match or a fresh If-Modified-Since.

import { createHash, randomUUID } from "node:crypto";
import { readFileSync, promises as fsp } from "node:fs";
import http from "node:http";
import path from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";

import faye from "faye";

const USAGE =
  "usage: node tests/js/upstream.mjs --port 0 --cassette FILE [--host 127.0.0.1] " +
  "[--user U --password P] [--timeout SECONDS] [--ui DIR]";

const BAYEUX_PATH = "/api/v2/notifications";
const CSRF_HEADER = "X-CSRF-TOKEN";
// CometD servers set this cookie on Bayeux responses; here it also proves that a desktop
// sends a cookie set by a Bayeux response (long-polling or the WebSocket upgrade) on REST.
const BROWSER_COOKIE = "BAYEUX_BROWSER";

function browserCookie() {
  return `${BROWSER_COOKIE}=${randomUUID().replaceAll("-", "")}; Path=/; HttpOnly`;
}

function die(text, code = 2) {
  process.stderr.write(`upstream: error: ${text}\n`);
  process.exit(code);
}

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

// --- arguments and cassette -----------------------------------------------------------------

function parseOptions(argv) {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        port: { type: "string", default: "0" },
        host: { type: "string", default: "127.0.0.1" },
        cassette: { type: "string" },
        user: { type: "string" },
        password: { type: "string" },
        timeout: { type: "string", default: "30" },
        ui: { type: "string" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    die(`${e.message}\n${USAGE}`);
  }
  if (!values.cassette) die(`--cassette is required\n${USAGE}`);
  if ((values.user === undefined) !== (values.password === undefined)) {
    die("--user and --password go together");
  }
  const port = Number(values.port);
  const timeout = Number(values.timeout);
  if (!Number.isInteger(port) || port < 0 || port > 65535) die("--port must be 0..65535");
  if (!(timeout > 0)) die("--timeout must be a positive number of seconds");
  return { ...values, port, timeout };
}

function loadCassette(file) {
  let raw;
  try {
    raw = JSON.parse(readFileSync(file, "utf8"));
  } catch (e) {
    die(`cannot read cassette ${file}: ${e.message}`);
  }
  if (raw === null || typeof raw !== "object" || raw.version !== 1) {
    die(`${file} is not a version 1 cassette`);
  }
  // Every desktop's events on the cassette's one clock (a stable sort keeps each order).
  const events = (raw.desktops || [])
    .flatMap((d) => d.events || [])
    .map((e, i) => [e, i])
    .sort((a, b) => a[0].at_ms - b[0].at_ms || a[1] - b[1])
    .map(([e]) => e);
  const exchanges = events.filter((e) => e.type === "exchange");
  const caused = new Map();
  for (const e of events) {
    if (e.type === "notification" && e.cause != null) {
      if (!caused.has(e.cause)) caused.set(e.cause, []);
      caused.get(e.cause).push(e);
    }
  }
  // The ring: what came unsolicited before the desktop's first operation (a login GET may
  // precede it), or before the first exchange when there is no operation.
  let end = events.findIndex((e) => e.type === "exchange" && operationName(e.request.body));
  if (end < 0) end = events.findIndex((e) => e.type === "exchange");
  const unsolicited = events
    .slice(0, end < 0 ? events.length : end)
    .filter((e) => e.type === "notification" && e.cause == null);
  return { exchanges, caused, unsolicited };
}

function operationName(body) {
  const json = body && body.json;
  return json && typeof json === "object" && typeof json.operationName === "string"
    ? json.operationName
    : null;
}

// --- HTTP helpers ---------------------------------------------------------------------------

function readBody(request) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    request.on("data", (c) => chunks.push(c));
    request.on("end", () => resolve(Buffer.concat(chunks)));
    request.on("error", reject);
  });
}

function sendJson(response, status, value, headers = {}) {
  const body = Buffer.from(JSON.stringify(value));
  response.writeHead(status, {
    "Content-Type": "application/json;charset=UTF-8",
    "Content-Length": body.length,
    ...headers,
  });
  response.end(body);
}

function sendRecorded(response, recorded) {
  if (!recorded) return sendJson(response, 200, { statusCode: 0 });
  const body = recorded.body;
  let bytes = Buffer.alloc(0);
  let type = "application/json;charset=UTF-8";
  if (body && "json" in body) bytes = Buffer.from(JSON.stringify(body.json));
  else if (body && "text" in body) {
    bytes = Buffer.from(body.text);
    type = "text/plain;charset=UTF-8";
  } else if (body && "base64" in body) {
    bytes = Buffer.from(body.base64, "base64");
    type = "application/octet-stream";
  }
  for (const [k, v] of recorded.headers || []) {
    if (k.toLowerCase() === "content-type") type = v;
  }
  response.writeHead(recorded.status || 200, { "Content-Type": type, "Content-Length": bytes.length });
  response.end(bytes);
}

function parseCookies(header) {
  const cookies = {};
  for (const part of (header || "").split(";")) {
    const equal = part.indexOf("=");
    if (equal > 0) cookies[part.slice(0, equal).trim()] = part.slice(equal + 1).trim();
  }
  return cookies;
}

const CONTENT_TYPES = {
  ".html": "text/html; charset=utf-8",
  ".htm": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".gif": "image/gif",
  ".ico": "image/x-icon",
  ".woff2": "font/woff2",
  ".txt": "text/plain; charset=utf-8",
};

// --- the server -----------------------------------------------------------------------------

class Upstream {
  constructor(options) {
    this.o = options;
    this.cassette = loadCassette(options.cassette);
    this.used = new Set(); // exchange ids already played
    this.sessions = new Map(); // JSESSIONID -> CSRF token
    this.bayeux = new faye.NodeAdapter({ mount: BAYEUX_PATH, timeout: options.timeout });
    this.publisher = this.bayeux.getClient();
    this.clients = new Set(); // clientIds handed to remote clients
    this.doomed = new Set(); // clientIds whose next /meta/connect reply is 402::Unknown client
    this.bayeux.addExtension({
      outgoing: (message, request, callback) => callback(this.outgoing(message, request)),
    });
    this.server = http.createServer((req, res) => this.onRequest(req, res));
    this.server.on("upgrade", (req, socket, head) => this.onUpgrade(req, socket, head));
  }

  // Faye's replies on their way out: note the clients, and make a doomed client re-handshake
  // with the reply a real Genesys server gives to a session it lost.
  outgoing(message, request) {
    if (message.channel === "/meta/handshake" && message.successful && request) {
      this.clients.add(message.clientId);
    }
    if (message.channel === "/meta/connect" && this.doomed.delete(message.clientId)) {
      this.clients.delete(message.clientId);
      // Really lose the session (faye has no public call for it), or faye would keep
      // queueing events for the old clientId and deliver them on its socket.
      this.bayeux._server._engine.destroyClient(message.clientId);
      return {
        id: message.id,
        channel: "/meta/connect",
        clientId: message.clientId,
        successful: false,
        error: "402::Unknown client",
        advice: { reconnect: "handshake", interval: 0 },
      };
    }
    return message;
  }

  // The user a request authenticates as, or null.
  authenticate(request) {
    const match = /^Basic\s+(\S+)$/i.exec(request.headers.authorization || "");
    if (!match) return null;
    const decoded = Buffer.from(match[1], "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    if (colon < 0) return null;
    const [user, password] = [decoded.slice(0, colon), decoded.slice(colon + 1)];
    if (this.o.user !== undefined && (user !== this.o.user || password !== this.o.password)) {
      return null;
    }
    return user;
  }

  describe(request, websocket) {
    const cookies = parseCookies(request.headers.cookie);
    const session = cookies.JSESSIONID || null;
    const token = request.headers[CSRF_HEADER.toLowerCase()];
    return {
      event: "request",
      method: request.method,
      path: request.url,
      user: this.authenticate(request),
      cookies: Object.keys(cookies).sort(),
      session,
      csrf: Boolean(session && token && this.sessions.get(session) === token),
      websocket,
    };
  }

  async publish(notifications) {
    for (const n of notifications) {
      const data = n.message && "data" in n.message ? n.message.data : n.data;
      await this.publisher.publish(n.channel, data);
    }
  }

  onRequest(request, response) {
    const line = this.describe(request, false);
    response.on("finish", () => emit({ ...line, status: response.statusCode }));
    response.on("close", () => {
      if (!response.writableFinished) {
        emit({ ...line, status: response.headersSent ? response.statusCode : null, aborted: true });
      }
    });
    this.route(request, response, line).catch((e) => {
      process.stderr.write(`upstream: ${request.method} ${request.url}: ${e.stack || e}\n`);
      if (!response.headersSent) sendJson(response, 500, { statusCode: 4, statusMessage: String(e) });
      else response.destroy();
    });
  }

  async route(request, response, line) {
    const url = new URL(request.url, "http://upstream");
    const pathname = url.pathname;
    if (pathname.startsWith("/test/")) return this.testHook(request, response, pathname);
    if (pathname === "/ui" || pathname.startsWith("/ui/")) return this.ui(request, response, url);
    if (pathname !== "/api/v2" && !pathname.startsWith("/api/v2/")) {
      return sendJson(response, 404, { statusCode: 6, statusMessage: "Not found" });
    }
    if (line.user === null) {
      return sendJson(
        response,
        401,
        { statusCode: 3, statusMessage: "Unauthorized" },
        { "WWW-Authenticate": 'Basic realm="GWS"' },
      );
    }
    if (this.bayeux.check(request)) {
      if (!line.cookies.includes(BROWSER_COOKIE)) response.setHeader("Set-Cookie", browserCookie());
      return this.bayeux.handle(request, response);
    }
    if (["POST", "PUT", "DELETE"].includes(request.method) && !line.csrf) {
      return sendJson(response, 403, { statusCode: 3, statusMessage: "Missing or invalid Csrf token" });
    }
    if (request.method === "GET" && pathname === "/api/v2/me") return this.me(response, line);
    const raw = await readBody(request);
    let json = null;
    if (raw.length) {
      try {
        json = JSON.parse(raw.toString("utf8"));
      } catch {
        return sendJson(response, 400, { statusCode: 1, statusMessage: "Body is not JSON" });
      }
    }
    return this.play(request.method, pathname, json, response);
  }

  me(response, line) {
    let session = line.session;
    const headers = { "X-CSRF-HEADER": CSRF_HEADER };
    if (!session || !this.sessions.has(session)) {
      session = randomUUID().replaceAll("-", "").toUpperCase();
      this.sessions.set(session, randomUUID());
      headers["Set-Cookie"] = `JSESSIONID=${session}; Path=/; HttpOnly`;
    }
    headers[CSRF_HEADER] = this.sessions.get(session);
    const recorded = this.find("GET", "/api/v2/me", null);
    const body =
      recorded && recorded.response && recorded.response.body && "json" in recorded.response.body
        ? recorded.response.body.json
        : { statusCode: 0, user: { id: "agent", userName: line.user, roles: ["ROLE_AGENT"] } };
    sendJson(response, 200, body, headers);
  }

  // The cassette's exchange for this request: same method and path and, for an operation,
  // the same operationName; the first one not played yet, else the last.
  find(method, pathname, operation) {
    const candidates = this.cassette.exchanges.filter(
      (e) =>
        e.request.method === method &&
        e.request.path === pathname &&
        operationName(e.request.body) === operation,
    );
    return candidates.find((e) => !this.used.has(e.id)) || candidates.at(-1) || null;
  }

  async play(method, pathname, json, response) {
    const operation =
      json && typeof json === "object" && typeof json.operationName === "string"
        ? json.operationName
        : null;
    const exchange = this.find(method, pathname, operation);
    if (!exchange) {
      if (operation !== null) {
        return sendJson(response, 400, {
          statusCode: 1,
          statusMessage: `Operation ${operation} on ${pathname} is not in the cassette`,
        });
      }
      return sendJson(response, 404, { statusCode: 6, statusMessage: "Not found" });
    }
    this.used.add(exchange.id);
    const notifications = this.cassette.caused.get(exchange.id) || [];
    // GWS often pushes the outcome before its HTTP answer: publish the first one before.
    await this.publish(notifications.slice(0, 1));
    sendRecorded(response, exchange.response);
    await this.publish(notifications.slice(1));
  }

  async testHook(request, response, pathname) {
    if (pathname === "/test/ping") return sendJson(response, 200, { pong: true });
    if (request.method !== "POST") return sendJson(response, 405, { error: "POST only" });
    if (pathname === "/test/ring") {
      await this.publish(this.cassette.unsolicited);
      return sendJson(response, 200, { published: this.cassette.unsolicited.length });
    }
    if (pathname === "/test/forget") {
      for (const clientId of this.clients) this.doomed.add(clientId);
      return sendJson(response, 200, { forgotten: this.doomed.size });
    }
    if (pathname === "/test/publish") {
      let message;
      try {
        message = JSON.parse((await readBody(request)).toString("utf8"));
      } catch (e) {
        return sendJson(response, 400, { error: `body is not JSON: ${e.message}` });
      }
      if (!message || typeof message.channel !== "string" || !("data" in message)) {
        return sendJson(response, 400, { error: 'expected {"channel": .., "data": ..}' });
      }
      await this.publish([message]);
      return sendJson(response, 200, { published: 1 });
    }
    return sendJson(response, 404, { error: `no test hook ${pathname}` });
  }

  async ui(request, response, url) {
    if (!this.o.ui) return sendJson(response, 404, { error: "no --ui directory" });
    if (!["GET", "HEAD"].includes(request.method)) return sendJson(response, 405, {});
    const root = path.resolve(this.o.ui);
    let file = path.resolve(root, "." + decodeURIComponent(url.pathname.slice("/ui".length)));
    if (file !== root && !file.startsWith(root + path.sep)) return sendJson(response, 403, {});
    let stat;
    try {
      stat = await fsp.stat(file);
      if (stat.isDirectory()) {
        file = path.join(file, "index.html");
        stat = await fsp.stat(file);
      }
    } catch {
      return sendJson(response, 404, { error: "not found" });
    }
    const content = await fsp.readFile(file);
    const etag = `"${createHash("sha256").update(content).digest("hex").slice(0, 20)}"`;
    const modified = new Date(Math.floor(stat.mtimeMs / 1000) * 1000);
    const headers = {
      ETag: etag,
      "Last-Modified": modified.toUTCString(),
      "Cache-Control": "no-cache",
    };
    const inm = request.headers["if-none-match"];
    const ims = request.headers["if-modified-since"];
    const fresh = inm
      ? inm.split(",").some((t) => t.trim() === etag || t.trim() === "*")
      : Boolean(ims) && Date.parse(ims) >= modified.getTime();
    if (fresh) {
      response.writeHead(304, headers);
      return response.end();
    }
    const type = CONTENT_TYPES[path.extname(file).toLowerCase()] || "application/octet-stream";
    response.writeHead(200, { ...headers, "Content-Type": type, "Content-Length": content.length });
    response.end(request.method === "HEAD" ? undefined : content);
  }

  onUpgrade(request, socket, head) {
    const line = this.describe(request, true);
    const refuse = (status, reason, extra = "") => {
      emit({ ...line, status });
      socket.end(`HTTP/1.1 ${status} ${reason}\r\n${extra}Content-Length: 0\r\nConnection: close\r\n\r\n`);
    };
    if (!this.bayeux.check(request)) return refuse(404, "Not Found");
    if (line.user === null) {
      return refuse(401, "Unauthorized", 'WWW-Authenticate: Basic realm="GWS"\r\n');
    }
    if (!line.cookies.includes(BROWSER_COOKIE)) {
      // faye writes the 101 itself, with no way to add a header: slip the cookie into it.
      const write = socket.write;
      socket.write = function (chunk, ...rest) {
        socket.write = write;
        const text = Buffer.isBuffer(chunk) ? chunk.toString("latin1") : String(chunk);
        if (text.startsWith("HTTP/1.1 101")) {
          const cookie = `\r\nSet-Cookie: ${browserCookie()}\r\n`;
          chunk = Buffer.from(text.replace("\r\n", cookie), "latin1");
        }
        return write.call(socket, chunk, ...rest);
      };
    }
    emit({ ...line, status: 101 });
    this.bayeux.handleUpgrade(request, socket, head);
  }

  listen() {
    this.server.listen(this.o.port, this.o.host, () => {
      const { port } = this.server.address();
      const host = this.o.host.includes(":") ? `[${this.o.host}]` : this.o.host;
      process.stdout.write(`listening on http://${host}:${port}\n`);
    });
  }
}

for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => process.exit(0));
new Upstream(parseOptions(process.argv.slice(2))).listen();
