// The client against a real switchboard-local (started here, with a real
// redis-server where state must outlive the emulator): a forced close, a
// TCP drop, an emulator restart on Redis, a rotation at a short maximum
// connection duration, and recovered:false once the history is gone.
// Needs target/debug/switchboard-local (make test builds it) or SWITCHBOARD_LOCAL.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHmac, randomBytes } from "node:crypto";
import { Switchboard } from "../src/index.js";
import { SECRET, eventually, publish, sleep, startEmulator, startRedis, tcpProxy, token } from "./harness.js";

/**
 * A client that collects the call events it receives, and its state
 * changes. `slowReconnect`: every connect after the first waits 400 ms for
 * its token, so what the test publishes right after a drop is missed for
 * sure (then recovered), not delivered live.
 */
function collector(url, { slowReconnect = false, ...options } = {}) {
  const got = [];
  const states = [];
  const gaps = [];
  let connects = 0;
  const slowToken = async () => {
    if (connects++ > 0) await sleep(400);
    return token("42");
  };
  const sb = new Switchboard({
    url,
    token: slowReconnect ? slowToken : token("42"),
    backoff: { baseMs: 50, maxMs: 200 },
    settleMs: 0,
    ...options,
  });
  sb.on("state", (s) => states.push(s));
  sb.on("gap", (g) => gaps.push(g));
  sb.subscribe(["call.*"], (e) => got.push(e));
  return { sb, got, states, gaps, ids: () => got.map((e) => e.id) };
}

/** Publishes one event and waits for `c` to receive it (and nothing else). */
async function receivesTheNextEvent(emu, c) {
  const before = c.got.length;
  const id = await publish(emu);
  await eventually("the next event", () => c.got.length === before + 1);
  assert.equal(c.got.at(-1).id, id);
}

function assertInOrderOnce(got, expected) {
  assert.deepEqual(got.map((e) => e.id), expected, "every event once, in order");
  const offsets = got.map((e) => e.offset);
  assert.ok(offsets.every((o, i) => i === 0 || o > offsets[i - 1]), `offsets ascend: ${offsets}`);
}

test("after the gateway closes the connection, the client reconnects and recovers what was published meanwhile", async () => {
  const emu = await startEmulator({ args: ["--idle-timeout-secs", "1"] });
  const c = collector(emu.ws, { pingIntervalMs: 60_000, slowReconnect: true });
  try {
    await eventually("connected", () => c.sb.state === "connected");
    const expected = [await publish(emu)];
    await eventually("the first event", () => c.got.length === 1);
    await eventually("the idle close", () => c.states.includes("disconnected"), 5_000);
    for (let i = 0; i < 20; i++) expected.push(await publish(emu));
    await eventually("all 21", () => c.got.length >= 21);
    assertInOrderOnce(c.got, expected);
    assert.deepEqual(c.gaps, []);
  } finally {
    c.sb.close();
    emu.stop();
  }
});

test("after the TCP connection drops, the client reconnects and recovers", async () => {
  const emu = await startEmulator();
  // A proxy between the client and the emulator whose sockets we cut.
  const proxy = await tcpProxy(emu.ports.ws);
  const c = collector(`ws://127.0.0.1:${proxy.port}/local`, { slowReconnect: true });
  try {
    await eventually("connected", () => c.sb.state === "connected");
    const expected = [await publish(emu)];
    await eventually("the first event", () => c.got.length === 1);
    proxy.drop();
    await eventually("the drop", () => c.states.includes("disconnected"));
    for (let i = 0; i < 20; i++) expected.push(await publish(emu, "call.ended"));
    await eventually("all 21", () => c.got.length >= 21);
    assertInOrderOnce(c.got, expected);
  } finally {
    c.sb.close();
    proxy.close();
    emu.stop();
  }
});

test("across a restart of a Redis-backed emulator, nothing is missed", async () => {
  const redis = await startRedis();
  const prefix = `js${randomBytes(4).toString("hex")}`;
  const emu = await startEmulator({ redis, prefix });
  // A second instance on the same Redis takes publishes while the first is down.
  const other = await startEmulator({ redis, prefix });
  const c = collector(emu.ws);
  try {
    await eventually("connected", () => c.sb.state === "connected");
    const expected = [await publish(emu)];
    await eventually("the first event", () => c.got.length === 1);
    await emu.kill();
    await eventually("the drop", () => c.states.includes("disconnected"));
    // At once: each publish also tries the killed instance's connection,
    // still recorded in Redis (its endpoint refuses; the SDK retries), so
    // one after the other would take ten times as long. Their offsets
    // follow the order the store took them in, not the order sent.
    expected.push(...(await Promise.all(Array.from({ length: 10 }, () => publish(other)))));
    await emu.restart();
    await eventually("all 11", () => c.got.length >= 11, 15_000);
    assert.equal(c.got[0].id, expected[0]);
    assert.deepEqual(new Set(c.ids()), new Set(expected), "every event");
    assertInOrderOnce(c.got, c.got.map((e) => e.id));
    assert.deepEqual(c.gaps, [], "the history lives in Redis: no gap");
  } finally {
    c.sb.close();
    emu.stop();
    other.stop();
    redis.stop();
  }
});

test("at a short maximum duration, the client rotates without losing or repeating an event", async () => {
  const emu = await startEmulator({ args: ["--max-connection-secs", "3", "--reconnect-notice-secs", "2"] });
  let sockets = 0;
  class Counting extends WebSocket {
    constructor(...a) {
      super(...a);
      sockets += 1;
    }
  }
  const c = collector(emu.ws, { WebSocket: Counting });
  try {
    await eventually("connected", () => c.sb.state === "connected");
    const expected = [];
    const until = Date.now() + 4_000;
    while (Date.now() < until) {
      expected.push(await publish(emu));
      await sleep(15);
    }
    await eventually("all of them", () => c.got.length >= expected.length);
    await sleep(200);
    assertInOrderOnce(c.got, expected);
    assert.ok(sockets >= 2, `rotated (${sockets} connections)`);
    assert.ok(!c.states.includes("disconnected"), `no gap in the connection: ${c.states}`);
  } finally {
    c.sb.close();
    emu.stop();
  }
});

test("when the history is gone (an in-memory emulator restarted), the client says gap and goes on", async () => {
  const emu = await startEmulator();
  const c = collector(emu.ws);
  try {
    await eventually("connected", () => c.sb.state === "connected");
    await publish(emu);
    await eventually("the first event", () => c.got.length === 1);
    const before = c.got[0].epoch;
    await emu.kill();
    await emu.restart();
    await eventually("the gap", () => c.gaps.length === 1, 15_000);
    assert.notEqual(c.gaps[0].epoch, before, "a new epoch");
    const after = await publish(emu);
    await eventually("the next event", () => c.got.length === 2);
    assert.equal(c.got[1].id, after);
    assert.equal(c.got[1].epoch, c.gaps[0].epoch);
  } finally {
    c.sb.close();
    emu.stop();
  }
});

test("a handshake refused with 401 (an expired token) asks the token function again and connects", async () => {
  const emu = await startEmulator();
  const expired = (() => {
    const [head, , ] = token("42").split(".");
    const body = Buffer.from(JSON.stringify({ sub: "42", tenant_id: "t1", role: "agent", exp: 1 })).toString("base64url");
    return `${head}.${body}.${createHmac("sha256", SECRET).update(`${head}.${body}`).digest("base64url")}`;
  })();
  const asked = [];
  const c = collector(emu.ws, {
    token: async () => {
      asked.push(Date.now());
      return asked.length === 1 ? expired : token("42");
    },
  });
  try {
    await eventually("connected", () => c.sb.state === "connected");
    assert.equal(asked.length, 2, "refused once, then a fresh token");
    assert.deepEqual(c.states, ["connected"], "never up before: no disconnected");
    await receivesTheNextEvent(emu, c);
  } finally {
    c.sb.close();
    emu.stop();
  }
});

test("pings under the gateway's idle timeout keep the connection open", async () => {
  const emu = await startEmulator({ args: ["--idle-timeout-secs", "1"] });
  const c = collector(emu.ws, { pingIntervalMs: 300 });
  try {
    await eventually("connected", () => c.sb.state === "connected");
    await sleep(2_500);
    assert.deepEqual(c.states, ["connected"], "not closed for idling");
    await receivesTheNextEvent(emu, c);
  } finally {
    c.sb.close();
    emu.stop();
  }
});
