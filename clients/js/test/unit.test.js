// The client's logic without a server: backoff, duplicates, ordering, and
// a scripted fake socket for the protocol steps.
import { afterEach, test } from "node:test";
import assert from "node:assert/strict";
import { Switchboard as Client, Tracker, backoffDelay, topicMatches } from "../src/index.js";

/** A client closed after its test, whatever the test's outcome (its timers would keep the run alive). */
const live = [];
class Switchboard extends Client {
  constructor(options) {
    super(options);
    live.push(this);
  }
}
afterEach(() => {
  for (const sb of live.splice(0)) sb.close();
});

test("backoff is full jitter under an exponential ceiling with a cap", () => {
  assert.equal(backoffDelay(0, { baseMs: 500, maxMs: 30_000 }, () => 0.999), 499);
  assert.equal(backoffDelay(3, { baseMs: 500, maxMs: 30_000 }, () => 0.999), 3996);
  assert.equal(backoffDelay(20, { baseMs: 500, maxMs: 30_000 }, () => 0.999), 29_970, "capped");
  assert.equal(backoffDelay(5, {}, () => 0), 0, "full jitter reaches zero");
  const waits = Array.from({ length: 1000 }, () => backoffDelay(4));
  assert.ok(waits.every((w) => w >= 0 && w < 8000));
  assert.ok(new Set(waits).size > 500, "spread, not synchronised");
});

test("topics match as the server's do", () => {
  assert.ok(topicMatches("*", "call.incoming"));
  assert.ok(topicMatches("call.*", "call.incoming"));
  assert.ok(topicMatches("queue.member.*", "queue.member.added"));
  assert.ok(!topicMatches("queue.member.*", "queue.joined"));
  assert.ok(topicMatches("call.incoming", "call.incoming"));
  assert.ok(!topicMatches("call.incoming", "call.ended"));
  assert.ok(!topicMatches("cal.*", "call.incoming"));
});

test("duplicates are dropped by id; the position only says where to recover from", () => {
  let now = 0;
  const t = new Tracker({ settleMs: 1000, now: () => now });
  t.reset("E", 0); // what the first subscribe's answer gives
  const ev = (offset, id = `e${offset}`) => ({ id, epoch: "E", offset });
  assert.ok(t.accept(ev(10)));
  assert.ok(t.accept(ev(12)));
  assert.ok(t.accept(ev(11)), "a lower offset that arrives late is not a duplicate");
  assert.ok(!t.accept(ev(12)), "an id seen is a duplicate");
  assert.ok(!t.accept({ id: "e10" }), "an id seen is a duplicate (the offline queue's copy)");
  assert.deepEqual(t.since(), { epoch: "E", offset: 0 }, "nothing settled yet: recover from before them");
  now = 1500;
  assert.deepEqual(t.since(), { epoch: "E", offset: 12, id: "e12" }, "settled: recover from the highest seen, named by its id");
  assert.ok(t.accept(ev(9)), "a late event below the position that was never seen is delivered (a retried post)");
  assert.ok(!t.accept(ev(9)), "once");
  assert.deepEqual(t.since(), { epoch: "E", offset: 12, id: "e12" }, "a late one does not move the position back");
  assert.ok(t.accept(ev(13)));
  now = 1600;
  assert.deepEqual(t.since(), { epoch: "E", offset: 12, id: "e12" }, "13 came less than settleMs ago");
  t.advance("E", 20, "e20");
  assert.deepEqual(t.since(), { epoch: "E", offset: 20, id: "e20" }, "a recovery proved everything up to 20");
  assert.ok(t.accept({ id: "n1", epoch: "F", offset: 3 }), "a new epoch starts over");
  assert.deepEqual(t.since(), { epoch: "F", offset: 2 });
});

test("the tracker stays bounded", () => {
  const t = new Tracker({ maxSeen: 100, settleMs: 1e9, now: () => 0 });
  for (let i = 1; i <= 10_000; i++) t.accept({ id: `e${i}`, epoch: "E", offset: i });
  assert.ok(t.recent.length <= 100 && t.seenIds.size <= 100, `${t.recent.length} ${t.seenIds.size}`);
  assert.equal(t.since().offset, 9900, "what fell out of the window counts as seen");
});

/** A WebSocket double the test scripts: it records what the client sends. */
class FakeSocket {
  static all = [];
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.readyState = 0;
    this.sent = [];
    FakeSocket.all.push(this);
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close(code = 1000, reason = "") {
    if (this.readyState === 3) return;
    this.readyState = 3;
    queueMicrotask(() => this.onclose?.({ code, reason }));
  }
  open() {
    this.readyState = 1;
    this.onopen?.();
  }
  push(message) {
    this.onmessage?.({ data: JSON.stringify(message) });
  }
  drop() {
    this.readyState = 3;
    this.onclose?.({ code: 1006, reason: "" });
  }
  /** A refused handshake as Node 20's WebSocket reports it: `error`, and no `close` ever. */
  refuse() {
    this.readyState = 3;
    this.onerror?.({});
  }
}

const tick = () => new Promise((r) => setTimeout(r, 5));
const event = (offset, type = "call.incoming") => ({ id: `e${offset}`, type, tenant_id: "t1", timestamp: 1, data: {}, epoch: "E", offset });

test("a reconnect resubscribes with since, delivers the replay in offset order, drops duplicates, and asks for a fresh token", async () => {
  FakeSocket.all = [];
  let tokens = 0;
  const sb = new Switchboard({
    url: "ws://x/local",
    token: async () => `jwt${++tokens}`,
    WebSocket: FakeSocket,
    backoff: { baseMs: 1, maxMs: 2 },
    settleMs: 0,
  });
  const got = [];
  const states = [];
  sb.on("state", (s) => states.push(s));
  sb.subscribe(["call.*"], (e) => got.push(e.offset));
  await tick();
  const first = FakeSocket.all[0];
  assert.deepEqual(first.protocols, ["switchboard", "jwt1"], "the token as subprotocol, the browser form");
  first.open();
  assert.deepEqual(first.sent[0], {
    action: "subscribe",
    events: ["call.*"],
    since: { epoch: "0", offset: Number.MAX_SAFE_INTEGER },
    id: "recover-1",
  });
  first.push({ type: "subscribed", events: ["call.*"] });
  first.push({ type: "recovered", recovered: false, count: 0, epoch: "E", offset: 4 });
  assert.equal(sb.state, "connected");
  first.push(event(5));
  first.push(event(6));
  first.drop();
  assert.equal(sb.state, "disconnected");
  await tick();
  await tick();
  const second = FakeSocket.all[1];
  assert.deepEqual(second.protocols, ["switchboard", "jwt2"], "the token function is asked again");
  second.open();
  assert.deepEqual(second.sent[0].since, { epoch: "E", offset: 6, id: "e6" }, "the position names its event");
  second.push({ type: "subscribed", events: ["call.*"] });
  // A live event overtakes the replay; the replay repeats one it had.
  second.push(event(9));
  second.push(event(7));
  second.push(event(6));
  second.push(event(8));
  assert.deepEqual(got, [5, 6], "nothing delivered before recovered");
  const recovered = [];
  sb.on("recovered", (r) => recovered.push(r));
  second.push({ type: "recovered", recovered: true, count: 3, epoch: "E", offset: 9 });
  assert.deepEqual(got, [5, 6, 7, 8, 9], "in offset order, once each");
  assert.deepEqual(recovered, [{ count: 3, missed: 3, epoch: "E", offset: 9 }], "7, 8 and 9 were new; 6 was not");
  assert.deepEqual(states, ["connected", "disconnected", "connecting", "connected"], "(connecting came before the listener)");
  sb.close();
});

test("recovered:false is a gap: the client goes on from the server's position", async () => {
  FakeSocket.all = [];
  const sb = new Switchboard({ url: "ws://x", token: "t", WebSocket: FakeSocket, backoff: { baseMs: 1, maxMs: 1 }, settleMs: 0 });
  const gaps = [];
  sb.on("gap", (g) => gaps.push(g));
  const got = [];
  sb.subscribe(["*"], (e) => got.push(e.offset));
  await tick();
  FakeSocket.all[0].open();
  FakeSocket.all[0].push({ type: "recovered", recovered: false, count: 0, epoch: "E", offset: 1 });
  assert.deepEqual(gaps, [], "the first position is no gap");
  FakeSocket.all[0].push(event(2));
  FakeSocket.all[0].drop();
  await tick();
  await tick();
  const s = FakeSocket.all[1];
  s.open();
  s.push({ type: "recovered", recovered: false, count: 0, epoch: "F", offset: 50 });
  assert.deepEqual(gaps, [{ epoch: "F", offset: 50 }]);
  assert.deepEqual(sb.position, { epoch: "F", offset: 50 });
  s.push({ ...event(51), epoch: "F" });
  assert.deepEqual(got, [2, 51]);
  sb.close();
});

test("requests are matched to replies by id, time out, and fail fast when disconnected; nothing is left unhandled", async () => {
  FakeSocket.all = [];
  const sb = new Switchboard({ url: "ws://x", token: "t", WebSocket: FakeSocket, requestTimeoutMs: 50, backoff: { baseMs: 1000 } });
  await assert.rejects(sb.publish("chat.message", { user: "1" }, {}), { code: "not_connected" });
  await tick();
  const s = FakeSocket.all[0];
  s.open();
  const p1 = sb.publish("chat.message", { user: "1" }, { text: "a" });
  const p2 = sb.publish("chat.message", { user: "2" }, { text: "b" });
  const [r1, r2] = s.sent.slice(-2);
  assert.notEqual(r1.id, r2.id);
  s.push({ type: "published", id: r2.id, event_id: "x2", report: {} });
  s.push({ type: "error", id: r1.id, code: "forbidden", message: "no" });
  assert.equal((await p2).event_id, "x2");
  await assert.rejects(p1, { code: "forbidden", message: "no" });
  await assert.rejects(sb.publish("chat.message", { user: "1" }, {}), { code: "timeout" });
  const p3 = sb.publish("chat.message", { user: "1" }, {});
  s.drop();
  await assert.rejects(p3, { code: "disconnected" });
  sb.close();
});

test("a reconnect notice rotates: the new connection recovers, then the old one is closed", async () => {
  FakeSocket.all = [];
  const sb = new Switchboard({ url: "ws://x", token: "t", WebSocket: FakeSocket, settleMs: 0 });
  const got = [];
  sb.subscribe(["call.*"], (e) => got.push(e.offset));
  await tick();
  const old = FakeSocket.all[0];
  old.open();
  old.push({ type: "recovered", recovered: false, count: 0, epoch: "E", offset: 0 });
  old.push(event(1));
  old.push({ type: "reconnect", reason: "max_duration", within_secs: 300 });
  await tick();
  const fresh = FakeSocket.all[1];
  assert.ok(fresh, "a second connection opens before the first closes");
  fresh.open();
  assert.deepEqual(fresh.sent[0].since, { epoch: "E", offset: 1, id: "e1" });
  old.push(event(2));
  fresh.push(event(2));
  fresh.push(event(3));
  assert.equal(old.readyState, 1, "the old one stays until the new one has recovered");
  fresh.push({ type: "recovered", recovered: true, count: 2, epoch: "E", offset: 3 });
  assert.equal(old.readyState, 3, "then it is closed");
  fresh.push(event(4));
  assert.deepEqual(got, [1, 2, 3, 4], "nothing lost, nothing twice");
  assert.equal(sb.state, "connected");
  sb.close();
});

test("a handler that throws does not stop the others", async () => {
  FakeSocket.all = [];
  const sb = new Switchboard({ url: "ws://x", token: "t", WebSocket: FakeSocket, settleMs: 0 });
  const errors = [];
  sb.on("error", (e) => errors.push(e.message));
  const got = [];
  sb.on("call.incoming", () => {
    throw new Error("boom");
  });
  sb.on("call.incoming", (e) => got.push(e.offset));
  await tick();
  FakeSocket.all[0].open();
  FakeSocket.all[0].push({ type: "recovered", recovered: false, count: 0, epoch: "E", offset: 0 });
  FakeSocket.all[0].push(event(1));
  FakeSocket.all[0].push("not an object");
  assert.deepEqual(got, [1]);
  assert.deepEqual(errors, ["boom"]);
  sb.close();
});

test("a handshake that fails with only an error, or never opens, is retried with backoff; the state stays connecting", async () => {
  FakeSocket.all = [];
  const sb = new Switchboard({ url: "ws://x", token: "t", WebSocket: FakeSocket, backoff: { baseMs: 1, maxMs: 1 }, connectTimeoutMs: 30 });
  const states = [];
  sb.on("state", (s) => states.push(s));
  const until = async (what, check) => {
    for (let waited = 0; !check(); waited += 5) {
      if (waited > 2_000) throw new Error(`no ${what}`);
      await tick();
    }
  };
  await until("first attempt", () => FakeSocket.all.length === 1);
  FakeSocket.all[0].refuse();
  await until("attempt after a bare error", () => FakeSocket.all.length === 2);
  // The second one hangs (a black-holed SYN): the connect timeout ends it.
  await until("attempt after the connect timeout", () => FakeSocket.all.length === 3);
  assert.equal(FakeSocket.all[1].readyState, 3, "the hung socket was closed");
  assert.deepEqual(states, [], "still connecting: never up, so never disconnected");
  // From now on attempts wait long enough to be opened by hand.
  sb.connectTimeoutMs = 60_000;
  const n = FakeSocket.all.length;
  await until("an attempt with the long timeout", () => FakeSocket.all.length > n);
  FakeSocket.all.at(-1).open();
  assert.equal(sb.state, "connected");
});

/** A client subscribed to `topics` whose first connection is up, recovered at E:4; returns it and its events. */
async function upAndRecovered(topics, options = {}) {
  FakeSocket.all = [];
  const sb = new Switchboard({ url: "ws://x", token: "t", WebSocket: FakeSocket, backoff: { baseMs: 1, maxMs: 2 }, settleMs: 0, ...options });
  const got = [];
  const errors = [];
  sb.on("error", (e) => errors.push(e.code));
  for (const topic of topics) sb.subscribe([topic], (e) => got.push(e.offset));
  await tick();
  const first = FakeSocket.all[0];
  first.open();
  first.push({ type: "recovered", id: first.sent.at(-1).id, recovered: true, count: 0, epoch: "E", offset: 4, event_id: "e4" });
  assert.equal(sb.state, "connected");
  first.push(event(5));
  return { sb, got, errors, first };
}

/** Drops the connection and waits for the next one; returns its socket, opened. */
async function dropAndReopen(socket) {
  const n = FakeSocket.all.length;
  socket.drop();
  for (let i = 0; i < 50 && FakeSocket.all.length === n; i++) await tick();
  const next = FakeSocket.all.at(-1);
  assert.notEqual(next, socket, "a new connection");
  next.open();
  return next;
}

for (const [what, answer] of [
  ["an internal_error", (id) => ({ type: "error", id, code: "internal_error", message: "temporarily unable to serve this request; retry" })],
  ["API Gateway's own failure (no type)", () => ({ message: "Internal server error", connectionId: "abc", requestId: "r" })],
  ["a rate_limited refusal", (id) => ({ type: "error", id, code: "rate_limited", message: "over the limit", retry_after_ms: 5 })],
]) {
  test(`${what} in answer to the resubscribe fails the connection: it reconnects with backoff and recovers`, async () => {
    const { sb, got, errors, first } = await upAndRecovered(["call.*"]);
    const second = await dropAndReopen(first);
    const resub = second.sent.at(-1);
    assert.deepEqual(resub.since, { epoch: "E", offset: 5, id: "e5" });
    second.push(answer(resub.id));
    assert.ok(errors.length >= 1, "an error event says so");
    for (let i = 0; i < 50 && FakeSocket.all.length === 2; i++) await tick();
    const third = FakeSocket.all[2];
    assert.ok(third, "not deaf: a new connection");
    third.open();
    assert.deepEqual(third.sent.at(-1).since, { epoch: "E", offset: 5, id: "e5" }, "recovers from where it was");
    third.push(event(6));
    third.push({ type: "recovered", id: third.sent.at(-1).id, recovered: true, count: 1, epoch: "E", offset: 6, event_id: "e6" });
    assert.equal(sb.state, "connected");
    assert.deepEqual(got, [5, 6]);
  });
}

test("a silent server during the resubscribe fails the connection after recoverTimeoutMs", async () => {
  const { sb, got, first } = await upAndRecovered(["call.*"], { recoverTimeoutMs: 30 });
  const second = await dropAndReopen(first);
  assert.equal(sb.state, "connecting");
  for (let i = 0; i < 100 && FakeSocket.all.length === 2; i++) await tick();
  const third = FakeSocket.all[2];
  assert.ok(third, "not deaf: it gave up on the silent one");
  assert.equal(second.readyState, 3, "the silent one is closed");
  third.open();
  third.push({ type: "recovered", id: third.sent.at(-1).id, recovered: true, count: 0, epoch: "E", offset: 5, event_id: "e5" });
  third.push(event(6));
  assert.equal(sb.state, "connected");
  assert.deepEqual(got, [5, 6]);
});

test("a topic the server refuses is dropped with an error event, and the rest go on", async () => {
  const { sb, got, errors, first } = await upAndRecovered(["call.*", "chat.*"]);
  const second = await dropAndReopen(first);
  const resub = second.sent.at(-1);
  assert.deepEqual(resub.events, ["call.*", "chat.*"]);
  second.push({ type: "error", id: resub.id, code: "unknown_event_type", message: "unknown event type 'chat.*'" });
  assert.deepEqual(errors, ["unknown_event_type"]);
  const retry = second.sent.at(-1);
  assert.deepEqual(retry.events, ["call.*"], "the rest, on the same connection");
  assert.deepEqual(retry.since, { epoch: "E", offset: 5, id: "e5" });
  second.push(event(6));
  second.push({ type: "recovered", id: retry.id, recovered: true, count: 1, epoch: "E", offset: 6, event_id: "e6" });
  assert.equal(sb.state, "connected");
  assert.deepEqual(got, [5, 6]);
});

test("a late event that was never seen is delivered, even below the position", async () => {
  const { got, first } = await upAndRecovered(["call.*"]);
  first.push(event(7));
  first.push(event(6));
  first.push(event(7));
  assert.deepEqual(got, [5, 7, 6], "6 came late (a retried post): delivered; 7 twice: once");
});

test("a live subscribe the server refuses is forgotten; a resubscribe over the limit keeps the first topics", async () => {
  const { sb, got, errors, first } = await upAndRecovered(["call.*"]);
  sb.subscribe(["chat.nope"], () => {});
  const live = first.sent.at(-1);
  assert.deepEqual(live.events, ["chat.nope"]);
  first.push({ type: "error", id: live.id, code: "unknown_event_type", message: "unknown event type 'chat.nope'" });
  assert.ok(errors.includes("unknown_event_type"));
  sb.subscribe(["queue.*"], () => {});
  sb.subscribe(["agent.*"], () => {});
  const second = await dropAndReopen(first);
  const resub = second.sent.at(-1);
  assert.deepEqual(resub.events, ["call.*", "queue.*", "agent.*"], "the refused topic is not resubscribed");
  second.push({ type: "error", id: resub.id, code: "too_many_subscriptions", message: "at most 2 topics per connection; unsubscribe some" });
  const retry = second.sent.at(-1);
  assert.deepEqual(retry.events, ["call.*", "queue.*"], "the first two, on the same connection");
  second.push({ type: "recovered", id: retry.id, recovered: true, count: 0, epoch: "E", offset: 5, event_id: "e5" });
  assert.equal(sb.state, "connected");
  assert.equal(FakeSocket.all.length, 2, "no reconnect loop");
  second.push(event(6));
  assert.deepEqual(got, [5, 6]);
});

test("rotation comes in the last tenth of rotateAfterMs, at random: a fleet that connected together does not rotate together", () => {
  const at = (r) => new Switchboard({ url: "ws://x", token: "t", WebSocket: FakeSocket, autoConnect: false, rotateAfterMs: 100_000, random: () => r }).rotationDelay();
  assert.equal(at(0), 100_000);
  assert.equal(at(0.5), 95_000);
  assert.equal(at(0.999), 90_010);
  const spread = new Set(Array.from({ length: 200 }, () => new Switchboard({ url: "ws://x", token: "t", WebSocket: FakeSocket, autoConnect: false }).rotationDelay()));
  assert.ok(spread.size > 150, "spread, not synchronised");
  for (const d of spread) assert.ok(d > 99 * 60_000 && d <= 110 * 60_000, `${d}`);
});

test("a run of failed handshakes keeps the quick ceiling for quickForMs, then the waits grow to maxMs", () => {
  const sb = new Switchboard({ url: "ws://x", token: "t", WebSocket: FakeSocket, autoConnect: false, backoff: { quickForMs: 50 } });
  sb.attempt = 10;
  assert.equal(sb.ceiling().maxMs, 2_000, "the first failure of a run starts its clock");
  sb.attempt = 11;
  assert.equal(sb.ceiling().maxMs, 2_000);
  sb.failingSince -= 60;
  assert.equal(sb.ceiling().maxMs, 30_000, "an outage: the waits grow");
  sb.attempt = 0;
  assert.equal(sb.ceiling().maxMs, 2_000, "a success ends the run");
});

test("index.d.ts declares every export of index.js, and every public method of Switchboard and Channel", async () => {
  const { readFileSync } = await import("node:fs");
  const source = readFileSync(new URL("../src/index.js", import.meta.url), "utf8");
  const types = readFileSync(new URL("../src/index.d.ts", import.meta.url), "utf8");
  const exported = [...source.matchAll(/^export (?:class|function|const) (\w+)/gm)].map((m) => m[1]);
  assert.ok(exported.includes("Channel") && exported.includes("Switchboard"), exported.join(", "));
  for (const name of exported) assert.match(types, new RegExp(`export declare (class|function|const) ${name}\\b`), name);
  const mod = await import("../src/index.js");
  for (const cls of ["Switchboard", "Channel"]) {
    const body = types.slice(types.indexOf(`export declare class ${cls} {`));
    const declared = body.slice(0, body.indexOf("\n}"));
    const methods = Object.getOwnPropertyNames(mod[cls].prototype).filter((m) => m !== "constructor");
    // The public surface: what the README documents; the rest is the client's inner workings.
    const publicMethods = methods.filter((m) => declared.includes(` ${m}(`) || declared.includes(` ${m}<`) || declared.includes(`readonly ${m}:`));
    for (const m of ["on", "publish", "publishBatch", "channel", "subscribeChannel", "subscriptions", "subscribe", "close"].filter(() => cls === "Switchboard")) {
      assert.ok(publicMethods.includes(m), `${cls}.${m} is declared`);
    }
    for (const m of ["on", "leave", "name", "position"].filter(() => cls === "Channel")) {
      assert.ok(publicMethods.includes(m) || declared.includes(`readonly ${m}:`), `${cls}.${m} is declared`);
    }
  }
});
