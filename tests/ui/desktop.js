// A small agent desktop on the official CometD client, for relay's real-browser tests.
//
//   index.html?transport=long-polling|websocket&server=ORIGIN&user=agent&password=secret
//   index.html?transport=long-polling#transport=websocket     (the fragment overrides)
//
// server defaults to the page's own origin; another origin goes through CORS. The page logs in
// (GET /api/v2/me?subresources=* with Basic auth; the answer names the CSRF header and gives
// its token), handshakes with the chosen transport only, subscribes /v2/me/* in the
// /meta/handshake listener (again after every re-handshake), and shows every call of
// /v2/me/calls as a row [data-call-id=ID] with its state in [data-state] and buttons enabled
// by the call's capabilities:
//   Answer    POST /api/v2/me/calls/ID {"operationName":"Answer"}
//   Transfer  POST /api/v2/me/calls/ID {"operationName":"InitiateTransfer","destination":{"phoneNumber":"5001"}}
//   Complete  POST /api/v2/me/calls/ID {"operationName":"CompleteTransfer"} (on the consult call)
// Every POST carries Basic auth, the CSRF token and the cookies (credentials: "include").
// #status says starting / logging in / connecting / connected / disconnected or
// "error: ..." (data-status="error"); #log lists what happened. window.desktopLog holds the
// same lines for a test to print when something goes wrong. Nothing is loaded from elsewhere.

import { CometD } from "./cometd/cometd.js";

const BAYEUX_PATH = "/api/v2/notifications";
const DESTINATION = "5001";

// The query string, then the fragment: a fragment's settings win. The fragment never reaches
// the server, so a page recorded at one address (relay's asset store keys a page by its path
// and query) can be opened again from the recording with another transport.
const params = new URLSearchParams(location.search);
for (const [key, value] of new URLSearchParams(location.hash.slice(1))) params.set(key, value);
const transport = params.get("transport") || "long-polling";
const server = (params.get("server") || location.origin).replace(/\/+$/, "");
const user = params.get("user") || "agent";
const password = params.get("password") || "secret";
const authorization = "Basic " + btoa(`${user}:${password}`);

const statusEl = document.getElementById("status");
const logEl = document.getElementById("log");
const tbody = document.querySelector("#calls tbody");
const calls = new Map(); // call id -> its row
let csrf = null; // [header name, token]

window.desktopLog = [];

function log(text, error = false) {
  const line = `${new Date().toISOString().slice(11, 23)} ${text}`;
  window.desktopLog.push(line);
  const item = document.createElement("li");
  item.textContent = line;
  if (error) item.className = "error";
  logEl.append(item);
  logEl.scrollTop = logEl.scrollHeight;
}

function setStatus(status, detail) {
  statusEl.dataset.status = status;
  statusEl.textContent = detail ? `${status}: ${detail}` : status;
  if (status === "error") log(`error: ${detail}`, true);
}

function headers(extra = {}) {
  const h = { Authorization: authorization, ...extra };
  if (csrf) h[csrf[0]] = csrf[1];
  return h;
}

// --- REST ---------------------------------------------------------------------------------

async function login() {
  setStatus("logging in");
  const response = await fetch(`${server}/api/v2/me?subresources=*`, {
    headers: { Authorization: authorization },
    credentials: "include",
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`GET /api/v2/me: HTTP ${response.status} ${text.slice(0, 200)}`);
  const name = response.headers.get("X-CSRF-HEADER");
  const token = name && response.headers.get(name);
  if (!name || !token) throw new Error("GET /api/v2/me: no X-CSRF-HEADER / token (CORS exposure?)");
  csrf = [name, token];
  let who = user;
  try {
    const me = JSON.parse(text);
    who = (me.user && (me.user.userName || me.user.id)) || user;
  } catch {
    // not JSON: keep the name we logged in with
  }
  log(`logged in as ${who} (CSRF header ${name})`);
}

async function operate(callId, body) {
  const path = `/api/v2/me/calls/${encodeURIComponent(callId)}`;
  log(`-> POST …/calls/…${callId.slice(-4)} ${body.operationName}`);
  let response;
  try {
    response = await fetch(server + path, {
      method: "POST",
      credentials: "include",
      headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify(body),
    });
  } catch (e) {
    setStatus("error", `${body.operationName}: ${e.message}`);
    return;
  }
  const text = await response.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // shown below as text
  }
  if (!response.ok || !json || json.statusCode !== 0) {
    setStatus("error", `${body.operationName}: HTTP ${response.status} ${text.slice(0, 300)}`);
    return;
  }
  log(`<- ${body.operationName}: HTTP ${response.status}, statusCode 0`);
}

// --- calls --------------------------------------------------------------------------------

const ACTIONS = [
  ["Answer", "Answer", (id) => ({ operationName: "Answer" })],
  [
    "Transfer",
    "InitiateTransfer",
    (id) => ({ operationName: "InitiateTransfer", destination: { phoneNumber: DESTINATION } }),
  ],
  ["Complete", "CompleteTransfer", (id) => ({ operationName: "CompleteTransfer" })],
];

function cell(text, attrs = {}) {
  const td = document.createElement("td");
  for (const [k, v] of Object.entries(attrs)) td.setAttribute(k, v);
  td.textContent = text;
  return td;
}

function rowFor(call) {
  let row = calls.get(call.id);
  if (row) return row;
  row = document.createElement("tr");
  row.dataset.callId = call.id;
  const actions = document.createElement("td");
  actions.className = "actions";
  for (const [label, operation, body] of ACTIONS) {
    const button = document.createElement("button");
    button.textContent = label;
    button.dataset.op = operation;
    button.disabled = true;
    button.addEventListener("click", () => {
      button.disabled = true; // one click, one request
      operate(call.id, body(call.id));
    });
    actions.append(button);
  }
  row.append(
    cell(call.id, { class: "id" }),
    cell("", { "data-type": "" }),
    cell("", { "data-party": "" }),
    cell("", { "data-state": "" }),
    actions,
  );
  calls.set(call.id, row);
  tbody.append(row);
  document.getElementById("no-calls").hidden = true;
  return row;
}

function showCall(call) {
  const row = rowFor(call);
  const party = (call.participants || [])
    .map((p) => (typeof p === "string" ? p : p.formattedPhoneNumber || p.phoneNumber))
    .join(", ");
  row.querySelector("[data-type]").textContent = call.callType || "";
  row.querySelector("[data-party]").textContent = party;
  row.querySelector("[data-state]").textContent = call.state;
  row.dataset.stateValue = call.state;
  const capabilities = new Set(call.capabilities || []);
  for (const button of row.querySelectorAll("button")) {
    let allowed = capabilities.has(button.dataset.op);
    // Transfer a talking call only (a held call can still InitiateTransfer in GWS's list).
    if (button.dataset.op === "InitiateTransfer") allowed &&= call.state === "Established";
    button.disabled = !allowed;
  }
}

function onCallMessage(message) {
  const data = message.data || {};
  const call = data.call;
  if (!call || !call.id) {
    log(`${message.channel} ${data.messageType || "?"} (no call)`);
    return;
  }
  log(`<= ${message.channel} ${data.notificationType || ""} ${call.id.slice(-3)} ${call.state}`);
  showCall(call);
}

// --- CometD -------------------------------------------------------------------------------

// A browser's WebSocket cannot carry an Authorization header (requestHeaders go on HTTP
// requests only): over WebSocket the credentials ride in the URL, and Chromium answers the
// server's 401 Basic challenge to the upgrade with them.
function bayeuxUrl() {
  if (transport !== "websocket") return server + BAYEUX_PATH;
  const url = new URL(server + BAYEUX_PATH);
  url.username = user;
  url.password = password;
  return url.href;
}

function connect() {
  const cometd = new CometD();
  for (const type of cometd.getTransportTypes()) {
    if (type !== transport) cometd.unregisterTransport(type);
  }
  if (!cometd.getTransportTypes().includes(transport)) {
    setStatus("error", `unknown transport ${transport}`);
    return;
  }
  cometd.configure({
    url: bayeuxUrl(),
    logLevel: "warn",
    requestHeaders: headers(),
  });
  cometd.addListener("/meta/handshake", (reply) => {
    if (!reply.successful) {
      setStatus("error", `handshake failed: ${JSON.stringify(reply.failure || reply.error || reply)}`.slice(0, 300));
      return;
    }
    log(`handshake over ${cometd.getTransport().type}, clientId ${reply.clientId.slice(0, 8)}…`);
    cometd.subscribe(
      "/v2/me/*",
      (message) => {
        if (message.channel === "/v2/me/calls") onCallMessage(message);
        else log(`<= ${message.channel}`);
      },
      (subscribed) => {
        if (subscribed.successful) {
          setStatus("connected");
          log("subscribed to /v2/me/*");
        } else if (!subscribed.failure) {
          setStatus("error", `subscription refused: ${subscribed.error}`);
        }
      },
    );
  });
  cometd.addListener("/meta/connect", (reply) => {
    if (cometd.isDisconnected()) return;
    if (!reply.successful) setStatus("disconnected", JSON.stringify(reply.failure?.reason || reply.error || ""));
    else if (statusEl.dataset.status === "disconnected") setStatus("connected");
  });
  setStatus("connecting");
  cometd.handshake();
  window.cometd = cometd;
}

document.getElementById("config").textContent = `${transport} · ${server}`;
login().then(connect, (e) => setStatus("error", e.message));
