// The console in a real browser: Debian's Chromium, headless, driven by
// playwright-core (no browser download), against a real switchboard-local
// started here with its development secret (so the console mints tokens).
// A screenshot at 1280x800 is left in target/test-artifacts/console.png.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Switchboard } from "../src/index.js";
import { eventually, publish, startEmulator, tcpProxy, token, launchChromium } from "./harness.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const ARTIFACTS = path.resolve(here, "../../../target/test-artifacts");

let browser;
before(async () => {
  browser = await launchChromium();
});
after(() => browser?.close());

/** A page at 1280x800 that fails the test on any script error or console error. */
async function openPage() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    // A refused reconnect attempt is the browser's own log line, not the page's error.
    if (m.type() === "error" && !/WebSocket connection to .* failed/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  return { page, problems, close: () => context.close() };
}

/** The offsets of the event rows in the feed, top (newest) first. */
const feedOffsets = (page) =>
  page.$$eval("#feed tbody tr[data-offset]", (rows) => rows.map((r) => Number(r.dataset.offset)));

test("the console signs in with ?token=, shows events, presence, recovery after a drop, publishes, and webhooks", async () => {
  const emu = await startEmulator({ secret: null });
  const proxy = await tcpProxy(emu.ports.ws);
  // A webhook receiver the tenant's webhook delivers to.
  const received = [];
  const receiver = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      received.push(req.headers["x-webhook-event"]);
      res.end("ok");
    });
  });
  await new Promise((r) => receiver.listen(0, "127.0.0.1", r));
  const admin = token("console", "admin", "t1", emu.secret);
  const { page, problems, close } = await openPage();
  let agent;
  try {
    const hook = await fetch(`${emu.http}/v1/webhooks`, {
      method: "POST",
      headers: { authorization: `Bearer ${admin}`, "content-type": "application/json" },
      body: JSON.stringify({ name: "crm", url: `http://127.0.0.1:${receiver.address().port}/hook`, events: ["call.*"] }),
    });
    assert.equal(hook.status, 201, await hook.text());

    // Signed in by the link; the gateway through the proxy, so the test can cut it.
    const ws = `ws://127.0.0.1:${proxy.port}/local`;
    await page.goto(`${emu.http}/console?token=${admin}&ws=${encodeURIComponent(ws)}`);
    await page.waitForSelector('#state[data-state="connected"]');
    assert.equal(await page.textContent("#who-role"), "admin");
    assert.ok(!page.url().includes("token="), `the token leaves the address bar: ${page.url()}`);

    // A published event shows in the feed.
    const sent = Date.now();
    const first = await publish(emu, "call.incoming", undefined, { call_id: "c-1", from: "+15550001" });
    await page.waitForSelector(`#feed tr[data-id="${first}"]`);
    const shownMs = Date.now() - sent;

    // A user going online and offline.
    agent = new Switchboard({ url: emu.ws, token: token("77", "agent", "t1", emu.secret) });
    const chats = [];
    agent.subscribe(["chat.*"], (e) => chats.push(e));
    await page.waitForSelector('#online li[data-user="77"]');
    agent.close();
    await page.waitForSelector('#online li[data-user="77"]', { state: "detached" });
    agent = new Switchboard({ url: emu.ws, token: token("77", "agent", "t1", emu.secret) });
    agent.subscribe(["chat.*"], (e) => chats.push(e));
    await page.waitForSelector('#online li[data-user="77"]');
    await eventually("the agent connected", () => agent.state === "connected");

    // The publish form delivers to the second client.
    await page.selectOption("#publish-type", "chat.message");
    await page.selectOption("#publish-target", "user");
    await page.fill("#publish-to", "77");
    await page.fill("#publish-data", '{"text": "not json');
    assert.ok(await page.isDisabled("#publish-send"), "bad JSON is refused before sending");
    assert.match(await page.textContent("#publish-data-error"), /not JSON/);
    await page.fill("#publish-data", '{"text": "from the console"}');
    await page.click("#publish-send");
    await page.waitForSelector("#publish-result.ok");
    assert.match(await page.textContent("#publish-result"), /1 delivered/);
    await eventually("the chat message at the agent", () => chats.length === 1);
    assert.equal(chats[0].data.text, "from the console");
    assert.deepEqual(chats[0].sender, { user_id: "console", role: "admin" });

    // The network drops; events published meanwhile appear once each, in order.
    const before = await feedOffsets(page);
    proxy.block();
    proxy.drop();
    await page.waitForSelector('#state[data-state="disconnected"], #state[data-state="connecting"]');
    const missed = [];
    for (let i = 0; i < 10; i++) missed.push(await publish(emu, "call.ended", undefined, { n: i }));
    proxy.unblock();
    await page.waitForSelector('#state[data-state="connected"]', { timeout: 15_000 });
    for (const id of missed) await page.waitForSelector(`#feed tr[data-id="${id}"]`);
    await page.waitForSelector("#feed tr.note");
    const offsets = await feedOffsets(page);
    assert.equal(new Set(offsets).size, offsets.length, `no duplicate rows: ${offsets}`);
    assert.deepEqual(offsets, [...offsets].sort((a, b) => b - a), `newest first, in offset order: ${offsets}`);
    // The 10, and the page's own user going offline and online again.
    const recovered = Number(/(\d+) missed event/.exec(await page.textContent("#feed tr.note"))?.[1]);
    assert.equal(recovered, 12);
    assert.equal(offsets.length, before.length + recovered);
    const after = await publish(emu, "call.answered", undefined, { call_id: "c-1" });
    await page.waitForSelector(`#feed tr[data-id="${after}"]`);

    // The detail view of an envelope.
    await page.click(`#feed tr[data-id="${first}"]`);
    const detail = JSON.parse(await page.textContent("#detail"));
    assert.equal(detail.id, first);
    assert.equal(detail.data.call_id, "c-1");
    assert.match(await page.textContent("#detail-fields"), /offset\d+epoch/);

    // The filter.
    await page.fill("#filter", "call.ended, presence.*");
    const types = await page.$$eval("#feed tbody tr[data-id] .type", (cells) => cells.map((c) => c.textContent));
    assert.equal(types.filter((t) => t === "call.ended").length, 10);
    assert.ok(types.every((t) => t === "call.ended" || t.startsWith("presence.")), `${types}`);
    await page.fill("#filter", "");

    // The webhook and its deliveries (12 call events matched it).
    await eventually("deliveries at the receiver", () => received.length >= 12);
    await page.click("#webhooks-refresh");
    await page.waitForSelector('.hook tr[data-status="delivered"]');
    assert.match(await page.textContent(".hook"), /127\.0\.0\.1/);

    // The chart has counted them.
    assert.match(await page.textContent("#rate-now"), /peak [1-9]\d*/);

    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, "console.png") });
    console.log(`# a published event was in the feed ${shownMs} ms after the publish call began`);
    assert.deepEqual(problems, []);
  } finally {
    agent?.close();
    await close();
    receiver.close();
    proxy.close();
    emu.stop();
  }
});

test("the console mints a development token, refuses a bad one, and mints nothing with a configured secret", async () => {
  const dev = await startEmulator({ secret: null });
  const configured = await startEmulator();
  const { page, problems, close } = await openPage();
  try {
    await page.goto(`${dev.http}/console`);
    await page.waitForSelector("#mint-form:not([hidden])");
    await page.fill('#token-form textarea', "not-a-token");
    await page.click('#token-form button');
    assert.match(await page.textContent("#signin-error"), /three base64url parts/);
    await page.fill('#mint-form input[name="user"]', "sup-1");
    await page.selectOption('#mint-form select[name="role"]', "supervisor");
    await page.click("#mint-form button");
    await page.waitForSelector('#state[data-state="connected"]');
    assert.equal(await page.textContent("#who-user"), "user sup-1");
    assert.match(await page.textContent("#webhooks-note"), /admin token/, "a supervisor sees no webhooks");
    // Supervisors may not publish to the whole tenant: the server says so, the page shows it.
    await page.selectOption("#publish-type", "call.incoming");
    await page.click("#publish-send");
    await page.waitForSelector("#publish-result.bad");
    assert.match(await page.textContent("#publish-result"), /forbidden|may publish/);

    // With JWT_SECRET set, /console/token refuses and the page only takes a pasted token.
    const refused = await fetch(`${configured.http}/console/token`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ tenant: "t1", user: "x", role: "admin" }),
    });
    assert.equal(refused.status, 403);
    assert.equal((await refused.json()).code, "minting_disabled");
    await page.goto(`${configured.http}/console`);
    await page.waitForSelector("#token-form");
    assert.ok(await page.isHidden("#mint-form"));
    assert.deepEqual(problems, []);
  } finally {
    await close();
    dev.stop();
    configured.stop();
  }
});

test("the console joins channels, shows each envelope's channel, publishes to one, and leaves", async () => {
  const emu = await startEmulator({ secret: null });
  const { page, problems, close } = await openPage();
  try {
    // An agent granted one queue, minted by the console itself.
    await page.goto(`${emu.http}/console`);
    await page.waitForSelector("#mint-form:not([hidden])");
    await page.fill('#mint-form input[name="user"]', "42");
    await page.selectOption('#mint-form select[name="role"]', "agent");
    await page.fill('#mint-form input[name="channels"]', "queue:support, chat:*");
    await page.click("#mint-form button");
    await page.waitForSelector('#state[data-state="connected"]');

    await page.fill("#channel-name", "queue:support");
    await page.fill("#channel-filter", "call.*");
    await page.click("#channel-join");
    await page.waitForSelector('#channels li[data-channel="queue:support"]');
    await page.fill("#channel-name", "queue:sales");
    await page.fill("#channel-filter", "");
    await page.click("#channel-join");
    await page.waitForFunction(() => /queue\.subscribe\.agent = granted/.test(document.querySelector("#channel-error").textContent));
    await page.waitForSelector('#channels li[data-channel="queue:sales"]', { state: "detached" });
    await page.fill("#channel-name", "chat:abc");
    await page.click("#channel-join");
    await page.waitForSelector('#channels li[data-channel="chat:abc"]');
    assert.equal(await page.textContent("#channel-count"), "2");

    const call = await publish(emu, "call.incoming", { channel: "queue:support" }, { caller: "+1555" });
    await publish(emu, "queue.stats", { channel: "queue:support" }); // outside the filter
    await page.waitForSelector(`#feed tr[data-id="${call}"][data-channel="queue:support"]`);
    assert.equal(await page.textContent(`#feed tr[data-id="${call}"] td:nth-child(2)`), "queue:support");
    await page.click(`#feed tr[data-id="${call}"]`);
    assert.match(await page.textContent("#detail-fields"), /channelqueue:support/);

    // Publish to a chat channel from the console: it comes back through the channel.
    await page.selectOption("#publish-type", "chat.message");
    await page.selectOption("#publish-target", "channel");
    await page.fill("#publish-to", "chat:abc");
    await page.fill("#publish-data", '{"text": "to the chat"}');
    await page.click("#publish-send");
    await page.waitForSelector("#publish-result.ok");
    assert.match(await page.textContent("#publish-result"), /1 delivered/);
    await page.waitForSelector('#feed tr[data-channel="chat:abc"]');

    await page.click('#channels li[data-channel="queue:support"] button');
    await page.waitForSelector('#channels li[data-channel="queue:support"]', { state: "detached" });
    const later = await publish(emu, "call.incoming", { channel: "queue:support" });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await page.$(`#feed tr[data-id="${later}"]`), null, "left: nothing more from it");
    assert.deepEqual(problems, []);
  } finally {
    await close();
    emu.stop();
  }
});
