// Channels in the client, against a real switchboard-local: handlers per
// event type on a channel, every channel resubscribed and recovered from
// its own position after a drop (in Node and in Chromium), batch frames
// unpacked, a refused channel dropped with an error while the rest goes on.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { Switchboard } from "../src/index.js";
import { clientPage, eventually, publish, sleep, startEmulator, tcpProxy, token, launchChromium } from "./harness.js";


/** Publishes a batch with a service token; returns the event ids. */
async function publishBatch(emu, events) {
  const r = await fetch(`${emu.http}/v1/events`, {
    method: "POST",
    headers: { authorization: `Bearer ${token("svc", "service", "t1", emu.secret)}`, "content-type": "application/json" },
    body: JSON.stringify({ events }),
  });
  const text = await r.text();
  assert.equal(r.status, 200, text);
  return JSON.parse(text).event_ids;
}

const to = (channel) => ({ channel });

test("each channel's handlers get its events of their types, and a drop recovers every channel", async () => {
  const emu = await startEmulator();
  const proxy = await tcpProxy(emu.ports.ws);
  let connects = 0;
  const sb = new Switchboard({
    url: `ws://127.0.0.1:${proxy.port}/local`,
    // Reconnects wait, so what is published after the drop is missed, then recovered.
    token: async () => {
      if (connects++ > 0) await sleep(400);
      return token("42", "agent", "t1", undefined, ["queue:support"]);
    },
    backoff: { baseMs: 50, maxMs: 200 },
    settleMs: 0,
  });
  const calls = [];
  const stats = [];
  const mine = [];
  const tenant = [];
  const gaps = [];
  const states = [];
  sb.on("state", (s) => states.push(s));
  sb.on("gap", (g) => gaps.push(g));
  sb.subscribe(["system.*"], (e) => tenant.push(e.id));
  const queue = sb.subscribeChannel("queue:support", {
    "call.incoming": (e) => calls.push(e.id),
    "queue.stats": (e) => stats.push(e.id),
  });
  sb.channel("agent:42").on("*", (e) => mine.push(e.id));
  try {
    await eventually("connected", () => sb.state === "connected");
    const mineExpected = [await publish(emu, "call.ringing", to("agent:42"))];
    const callsExpected = [await publish(emu, "call.incoming", to("queue:support"))];
    await publish(emu, "call.ended", to("queue:support")); // no handler for it
    await publish(emu, "call.incoming", to("queue:sales")); // not followed
    await eventually("the first events", () => mine.length === 1 && calls.length === 1);
    assert.deepEqual((await sb.subscriptions()).channels, { "agent:42": ["*"], "queue:support": ["call.incoming", "queue.stats"] });

    proxy.drop();
    await eventually("the drop", () => states.includes("disconnected"));
    for (let i = 0; i < 5; i++) {
      callsExpected.push(await publish(emu, "call.incoming", to("queue:support")));
      mineExpected.push(await publish(emu, "call.ringing", to("agent:42")));
    }
    const statsExpected = await publishBatch(emu, [
      { type: "queue.stats", target: to("queue:support"), data: { n: 1 } },
      { type: "queue.stats", target: to("queue:support"), data: { n: 2 } },
    ]);
    const tenantExpected = [await publish(emu, "system.notification")];
    await eventually("everything, recovered", () =>
      calls.length === 6 && mine.length === 6 && stats.length === 2 && tenant.length === 1, 15_000);
    assert.deepEqual(calls, callsExpected, "queue:support's call.incoming, once each, in order");
    assert.deepEqual(mine, mineExpected, "agent:42's, once each, in order");
    assert.deepEqual(stats, statsExpected);
    assert.deepEqual(tenant, tenantExpected);
    assert.deepEqual(gaps, []);
    // Its own offsets: 9 events went to queue:support (the call.ended it
    // filtered out among them), and the recovery proved the top.
    assert.equal(queue.position.offset, 9);

    // Live, after the reconnect: a batch frame carrying both channels' events.
    const live = await publishBatch(emu, [
      { type: "call.incoming", target: to("queue:support") },
      { type: "call.ringing", target: to("agent:42") },
    ]);
    await eventually("the batch", () => calls.length === 7 && mine.length === 7);
    assert.deepEqual([calls.at(-1), mine.at(-1)], live);
  } finally {
    sb.close();
    proxy.close();
    emu.stop();
  }
});

test("a refused channel is dropped with an error; the others and the connection go on", async () => {
  const emu = await startEmulator();
  const sb = new Switchboard({ url: emu.ws, token: token("42"), settleMs: 0 });
  const errors = [];
  const channelErrors = [];
  sb.on("error", (e) => errors.push(e));
  const sales = sb.channel("queue:sales");
  sales.on("error", (e) => channelErrors.push(e));
  sales.on("*", () => assert.fail("a refused channel delivers nothing"));
  const got = [];
  sb.channel("agent:42").on("*", (e) => got.push(e.id));
  try {
    await eventually("connected", () => sb.state === "connected");
    await eventually("the refusal", () => channelErrors.length === 1);
    assert.equal(channelErrors[0].code, "forbidden");
    assert.match(channelErrors[0].message, /queue\.subscribe\.agent = granted/);
    assert.deepEqual((await sb.subscriptions()).channels, { "agent:42": ["*"] });
    const id = await publish(emu, "call.ringing", to("agent:42"));
    await publish(emu, "call.incoming", to("queue:sales"));
    await eventually("its own channel's event", () => got.length === 1);
    assert.deepEqual(got, [id]);
    assert.throws(() => sb.channel("support"), /not <namespace>:<name>/);
  } finally {
    sb.close();
    emu.stop();
  }
});

test("a client following channels only rotates without losing or repeating an event", async () => {
  const emu = await startEmulator({ args: ["--max-connection-secs", "3", "--reconnect-notice-secs", "2"] });
  const sb = new Switchboard({ url: emu.ws, token: token("7", "supervisor"), settleMs: 0 });
  const got = [];
  const states = [];
  sb.on("state", (s) => states.push(s));
  sb.channel("team:east").on("agent.*", (e) => got.push(e.id));
  try {
    await eventually("connected", () => sb.state === "connected");
    const expected = [];
    const until = Date.now() + 4_000;
    while (Date.now() < until) {
      expected.push(await publish(emu, "agent.state.changed", to("team:east")));
      await sleep(15);
    }
    await eventually("all of them", () => got.length >= expected.length);
    await sleep(200);
    assert.deepEqual(got, expected);
    assert.ok(!states.includes("disconnected"), `no gap in the connection: ${states}`);
  } finally {
    sb.close();
    emu.stop();
  }
});

let browser;
before(async () => {
  browser = await launchChromium();
});
after(() => browser?.close());

test("in Chromium, channel subscriptions survive a reconnect with recovery", async () => {
  const emu = await startEmulator();
  const proxy = await tcpProxy(emu.ports.ws);
  const site = http.createServer(clientPage("channels"));
  await new Promise((r) => site.listen(0, "127.0.0.1", r));
  const page = await (await browser.newContext()).newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(e.message));
  try {
    await page.goto(`http://127.0.0.1:${site.address().port}/`);
    await page.evaluate(
      async ({ url, jwt }) => {
        const { Switchboard } = await import("/index.js");
        window.got = { queue: [], agent: [], gaps: 0, recovered: 0 };
        const sb = new Switchboard({ url, token: jwt, backoff: { baseMs: 50, maxMs: 200 }, settleMs: 0 });
        const queue = sb.channel("queue:support");
        queue.on("call.*", (e) => window.got.queue.push(e.id));
        queue.on("gap", () => (window.got.gaps += 1));
        queue.on("recovered", () => (window.got.recovered += 1));
        sb.channel("agent:42").on("*", (e) => window.got.agent.push(e.id));
        window.sb = sb;
      },
      { url: `ws://127.0.0.1:${proxy.port}/local`, jwt: token("42", "agent", "t1", undefined, ["queue:support"]) },
    );
    await page.waitForFunction(() => window.sb.state === "connected");
    const queue = [await publish(emu, "call.incoming", to("queue:support"))];
    const agent = [await publish(emu, "call.ringing", to("agent:42"))];
    await page.waitForFunction(() => window.got.queue.length === 1 && window.got.agent.length === 1);
    // Cut the network and keep it down while the events go out.
    proxy.block();
    proxy.drop();
    await page.waitForFunction(() => window.sb.state !== "connected");
    for (let i = 0; i < 10; i++) {
      queue.push(await publish(emu, "call.incoming", to("queue:support")));
      agent.push(await publish(emu, "call.ringing", to("agent:42")));
    }
    proxy.unblock();
    await page.waitForFunction(() => window.got.queue.length === 11 && window.got.agent.length === 11, null, { timeout: 15_000 });
    const got = await page.evaluate(() => window.got);
    assert.deepEqual(got.queue, queue, "queue:support's events, recovered, once, in order");
    assert.deepEqual(got.agent, agent);
    assert.equal(got.gaps, 0);
    assert.equal(got.recovered, 1, "the queue said it recovered");
    assert.deepEqual(problems, []);
  } finally {
    await page.close();
    site.close();
    proxy.close();
    emu.stop();
  }
});
