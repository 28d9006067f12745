// faye 1.4 (a real Bayeux server) as the peer of relay's notification fan-out benchmark.
//
//   node scripts/bench_faye.mjs [--port 0] [--host 127.0.0.1] [--timeout SECONDS]
//
// The first stdout line is `listening on http://HOST:PORT`. Serves:
// - faye at /api/v2/notifications: long-polling and WebSocket; --timeout is its long-poll hold
//   in seconds (default 60).
// - POST /_faye/trigger {"channel": .., "data": ..}: publishes one message on that channel and
//   answers {"statusCode":0} once faye has taken it. The benchmark gives every simulated desktop
//   its own channel and sends one trigger per desktop, as relay gets one REST request per
//   desktop; with one shared channel it is a broadcast.
// SIGINT/SIGTERM exit at once.

import http from "node:http";
import process from "node:process";
import { parseArgs } from "node:util";

import faye from "faye";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "0" },
    host: { type: "string", default: "127.0.0.1" },
    timeout: { type: "string", default: "60" },
  },
});

const bayeux = new faye.NodeAdapter({ mount: "/api/v2/notifications", timeout: Number(values.timeout) });
const publisher = bayeux.getClient();

function answer(response, status, body) {
  response.writeHead(status, { "Content-Type": "application/json" });
  response.end(JSON.stringify(body));
}

const server = http.createServer((request, response) => {
  if (request.method === "POST" && request.url === "/_faye/trigger") {
    const chunks = [];
    request.on("data", (c) => chunks.push(c));
    request.on("end", () => {
      let message;
      try {
        message = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      } catch {
        return answer(response, 400, { error: "not JSON" });
      }
      publisher.publish(message.channel, message.data).then(
        () => answer(response, 200, { statusCode: 0 }),
        (e) => answer(response, 500, { error: String(e) }),
      );
    });
    return;
  }
  bayeux.handle(request, response);
});
server.on("upgrade", (request, socket, head) => bayeux.handleUpgrade(request, socket, head));

for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => process.exit(0));
server.listen(Number(values.port), values.host, 4096, () => {
  const { port } = server.address();
  process.stdout.write(`listening on http://${values.host}:${port}\n`);
});
