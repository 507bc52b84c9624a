// A fleet against API Gateway's new-connection quota: 1,000 clients with
// the default backoff, their connections cut at once (a network failure,
// through a TCP proxy), the emulator playing a quota of 200 new connections
// per second (429 beyond it). Every client comes back and recovers what
// was published while it was away; none gives up. How long that took
// against the quota's own pace (1,000 / 200 = 5 s) is printed; the
// benchmark measures it (`make bench`, the reconnect storm), this test
// only asserts that nothing is lost.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Switchboard } from "../src/index.js";
import { eventually, publish, startEmulator, tcpProxy, token } from "./harness.js";

const N = 1000;
const QUOTA = 200;

test(`${N} clients dropped at once come back through a connect quota of ${QUOTA}/s, and recover`, async () => {
  // Every client that drops and comes back adds presence.offline and
  // presence.online to the tenant's history: 2,000 events here, which would
  // push the missed event's predecessor out of the default 1,000 (the
  // client then rightly says gap; presence that does not churn on a
  // reconnect is the presence issue's).
  const emu = await startEmulator({ args: ["--connect-quota", String(QUOTA)], env: { HISTORY_SIZE: "10000" } });
  const proxy = await tcpProxy(emu.ports.ws);
  const url = `ws://127.0.0.1:${proxy.port}/local`;
  const clients = Array.from({ length: N }, (_, i) => {
    const got = new Set();
    const states = [];
    let gaps = 0;
    const sb = new Switchboard({ url, token: token(`agent-${i}`), pingIntervalMs: 10 * 60_000, settleMs: 0 });
    sb.on("state", (s) => states.push(s));
    sb.on("gap", () => (gaps += 1));
    sb.subscribe(["call.*"], (e) => got.add(e.id));
    return {
      sb,
      got,
      states,
      get gaps() {
        return gaps;
      },
    };
  });
  const all = (check) => clients.every(check);
  try {
    await eventually("every client connected", () => all((c) => c.sb.state === "connected"), 60_000);
    const before = await publish(emu);
    await eventually("every client got the first event", () => all((c) => c.got.has(before)), 30_000);

    const dropped = Date.now();
    proxy.drop();
    await eventually("every client saw the drop", () => all((c) => c.states.includes("disconnected")), 10_000);
    const missed = await publish(emu);
    await eventually(
      "every client back, with what it missed",
      () => all((c) => c.sb.state === "connected" && c.got.has(missed)),
      60_000,
    );
    const secs = (Date.now() - dropped) / 1000;
    console.log(`storm: ${N} clients back and recovered ${secs.toFixed(1)} s after the drop; the quota's pace: ${N / QUOTA} s (x${(secs / (N / QUOTA)).toFixed(2)})`);
    assert.ok(all((c) => c.gaps === 0), "every client recovered (no gap)");
    assert.ok(all((c) => !c.states.includes("closed")), "nobody gave up");
    const after = await publish(emu);
    await eventually("and they are live", () => all((c) => c.got.has(after)), 30_000);
  } finally {
    for (const c of clients) c.sb.close();
    // The proxy's sockets to the emulator would keep this process alive.
    proxy.drop();
    proxy.close();
    await emu.kill();
  }
});
