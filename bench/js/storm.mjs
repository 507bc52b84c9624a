// Benchmark 13's reconnect storm, driven by the shipped JavaScript client:
// N clients (tenant `bench`, the default backoff) connect through a TCP
// proxy to a running switchboard-local, one event reaches them, the proxy
// cuts every connection at once, one event is published while they are
// away; the time from the cut until every client is connected again and
// has recovered that event is printed as JSON ({"secs":...}). The
// emulator's connect quota (--connect-quota) is what paces them.
//
// node [--experimental-websocket] bench/js/storm.mjs <ws-port> <http-url> <n> <jwt-secret>
// (SWITCHBOARD_LOCAL names the emulator binary the harness checks for.)
import { createHmac } from "node:crypto";
import { Switchboard } from "../../clients/js/src/index.js";
import { eventually, tcpProxy } from "../../clients/js/test/harness.js";

const [wsPort, http, n, secret] = process.argv.slice(2);
const N = Number(n);

function token(user, role) {
  const b64url = (data) => Buffer.from(data).toString("base64url");
  const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64url(JSON.stringify({ sub: user, tenant_id: "bench", role, exp: Math.floor(Date.now() / 1000) + 3600 }));
  return `${head}.${body}.${createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url")}`;
}

async function publish(marker) {
  const r = await fetch(`${http}/v1/events`, {
    method: "POST",
    headers: { authorization: `Bearer ${token("svc", "service")}`, "content-type": "application/json" },
    body: JSON.stringify({ type: "call.incoming", data: { storm: marker } }),
  });
  if (r.status !== 200) throw new Error(`publish answered ${r.status}: ${await r.text()}`);
  return (await r.json()).event_id;
}

const proxy = await tcpProxy(Number(wsPort));
const url = `ws://127.0.0.1:${proxy.port}/local`;
const clients = Array.from({ length: N }, (_, i) => {
  const got = new Set();
  let gaps = 0;
  let dropped = false;
  const sb = new Switchboard({ url, token: token(`storm-${i}`, "agent"), pingIntervalMs: 10 * 60_000, settleMs: 0 });
  sb.on("gap", () => (gaps += 1));
  sb.on("state", (s) => {
    if (s === "disconnected") dropped = true;
  });
  sb.subscribe(["call.*"], (e) => got.add(e.id));
  return { sb, got, gaps: () => gaps, dropped: () => dropped };
});
const all = (check) => clients.every(check);
let code = 0;
try {
  await eventually("every client connected", () => all((c) => c.sb.state === "connected"), 300_000);
  const first = await publish("before");
  await eventually("every client got the first event", () => all((c) => c.got.has(first)), 60_000);
  const cut = Date.now();
  proxy.drop();
  const missed = await publish("missed");
  const back = (c) => c.dropped() && c.sb.state === "connected" && c.got.has(missed);
  await eventually("every client back, with what it missed", () => all(back), 300_000);
  const secs = (Date.now() - cut) / 1000;
  console.log(JSON.stringify({ secs, gaps: clients.reduce((s, c) => s + c.gaps(), 0) }));
} catch (error) {
  console.error(`storm: ${error.stack ?? error}`);
  code = 1;
} finally {
  for (const c of clients) c.sb.close();
  proxy.drop();
  proxy.close();
}
process.exit(code);
