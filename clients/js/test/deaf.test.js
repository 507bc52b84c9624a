// The client in a real browser (Debian's Chromium, headless, driven by
// playwright-core) against a WebSocket server that misbehaves on script:
// what API Gateway and a failing back end do to a resubscribe. Each failure
// (an internal_error, API Gateway's own {"message": "Internal server
// error"} without a type, a server gone silent, a refused topic) must end
// in a working, recovered connection within the backoff: never deaf.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import http from "node:http";
import { clientPage, eventually, launchChromium } from "./harness.js";


/** One server-side WebSocket: text frames in (JSON), text frames out. */
class Peer {
  constructor(socket) {
    this.socket = socket;
    this.received = [];
    this.waiters = [];
    let buffer = Buffer.alloc(0);
    socket.on("data", (chunk) => {
      buffer = Buffer.concat([buffer, chunk]);
      for (;;) {
        const frame = Peer.parse(buffer);
        if (!frame) break;
        buffer = buffer.subarray(frame.length);
        if (frame.opcode === 8) return socket.destroy();
        if (frame.opcode !== 1) continue;
        this.received.push(JSON.parse(frame.payload.toString("utf8")));
        for (const w of this.waiters.splice(0)) w();
      }
    });
    socket.on("error", () => {});
  }

  /** A client frame (always masked), or null when incomplete. */
  static parse(b) {
    if (b.length < 2) return null;
    const opcode = b[0] & 0x0f;
    let len = b[1] & 0x7f;
    let at = 2;
    if (len === 126) {
      if (b.length < 4) return null;
      len = b.readUInt16BE(2);
      at = 4;
    } else if (len === 127) {
      if (b.length < 10) return null;
      len = Number(b.readBigUInt64BE(2));
      at = 10;
    }
    if (b.length < at + 4 + len) return null;
    const mask = b.subarray(at, at + 4);
    const payload = Buffer.from(b.subarray(at + 4, at + 4 + len));
    for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i % 4];
    return { opcode, payload, length: at + 4 + len };
  }

  send(message) {
    const payload = Buffer.from(JSON.stringify(message));
    const head =
      payload.length < 126
        ? Buffer.from([0x81, payload.length])
        : Buffer.from([0x81, 126, payload.length >> 8, payload.length & 0xff]);
    this.socket.write(Buffer.concat([head, payload]));
  }

  /** The next frame the client sends (5 s at most). */
  async next() {
    const deadline = Date.now() + 5000;
    while (this.received.length === 0) {
      assert.ok(Date.now() < deadline, "the client sent nothing");
      await new Promise((r) => {
        this.waiters.push(r);
        setTimeout(r, 100);
      });
    }
    return this.received.shift();
  }
}

/** An HTTP server that serves the client module and a page, and upgrades /ws; each connection goes to `peers`. */
async function scriptedServer() {
  const peers = [];
  const waiting = [];
  const server = http.createServer(clientPage("deaf"));
  server.on("upgrade", (req, socket) => {
    const accept = createHash("sha1")
      .update(`${req.headers["sec-websocket-key"]}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
      .digest("base64");
    socket.write(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        `Sec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Protocol: switchboard\r\n\r\n`,
    );
    const peer = new Peer(socket);
    peers.push(peer);
    for (const w of waiting.splice(0)) w();
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    base: `http://127.0.0.1:${server.address().port}`,
    ws: `ws://127.0.0.1:${server.address().port}/ws`,
    /** The `n`th connection (0-based), once it is open. */
    async connection(n) {
      await eventually(`connection ${n}`, () => peers.length > n, 10_000);
      return peers[n];
    },
    count: () => peers.length,
    close: () => {
      for (const p of peers) p.socket.destroy();
      server.close();
    },
  };
}

let browser;
before(async () => {
  browser = await launchChromium();
});
after(() => browser?.close());

const event = (offset) => ({ id: `e${offset}`, type: "call.incoming", tenant_id: "t1", timestamp: 1, data: {}, epoch: "E", offset });
const recovered = (id, offset) => ({ type: "recovered", id, recovered: true, count: 0, epoch: "E", offset, event_id: `e${offset}` });

test("in Chromium, every failed resubscribe ends in a working, recovered connection", async () => {
  const server = await scriptedServer();
  const page = await (await browser.newContext()).newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(e.message));
  await page.goto(server.base);
  await page.evaluate(async (url) => {
    const { Switchboard } = await import("/index.js");
    window.got = [];
    window.errors = [];
    window.sb = new Switchboard({ url, token: "t", backoff: { baseMs: 20, maxMs: 100 }, settleMs: 0, recoverTimeoutMs: 500 });
    window.sb.on("error", (e) => window.errors.push(e.code));
    window.sb.subscribe(["call.*"], (e) => window.got.push(e.offset));
    window.sb.subscribe(["chat.*"], (e) => window.got.push(e.offset));
  }, server.ws);
  const state = () => page.evaluate(() => window.sb.state);
  const got = () => page.evaluate(() => window.got);

  // Up, at E:4, one event; then the network drops it.
  let peer = await server.connection(0);
  let sub = await peer.next();
  peer.send(recovered(sub.id, 4));
  peer.send(event(5));
  await eventually("connected", async () => (await state()) === "connected");
  peer.socket.destroy();

  const failures = [
    ["an internal_error", (id) => ({ type: "error", id, code: "internal_error", message: "temporarily unable to serve this request; retry" })],
    ["API Gateway's own failure, without a type", () => ({ message: "Internal server error", connectionId: "x", requestId: "y" })],
    ["a silent server", null],
  ];
  for (const [n, [what, answer]] of failures.entries()) {
    peer = await server.connection(n + 1);
    sub = await peer.next();
    assert.equal(sub.action, "subscribe", what);
    assert.deepEqual(sub.since, { epoch: "E", offset: 5, id: "e5" }, `${what}: it recovers from where it was`);
    assert.ok(typeof sub.id === "string", `${what}: the resubscribe carries an id`);
    if (answer) peer.send(answer(sub.id));
    // Not deaf: it gives up on this one and opens the next (the silent one after recoverTimeoutMs).
    await server.connection(n + 2);
    assert.equal(await state(), "connecting", what);
  }

  // A topic refused by name: dropped with an error, the rest recover on the same connection.
  peer = await server.connection(4);
  sub = await peer.next();
  assert.deepEqual(sub.events, ["call.*", "chat.*"]);
  peer.send({ type: "error", id: sub.id, code: "unknown_event_type", message: "unknown event type 'chat.*'" });
  const again = await peer.next();
  assert.deepEqual(again.events, ["call.*"], "the rest, on the same connection");
  assert.deepEqual(again.since, { epoch: "E", offset: 5, id: "e5" });
  peer.send(event(6));
  peer.send({ ...recovered(again.id, 6), count: 1 });
  await eventually("recovered", async () => (await state()) === "connected");
  peer.send(event(8));
  // A late delivery (a queued fan-out's retried post) below what it has: never seen, so delivered; a repeat is not.
  peer.send(event(7));
  peer.send(event(8));
  await eventually("live again", async () => (await got()).includes(7));
  assert.deepEqual(await got(), [5, 6, 8, 7], "every event once, the late one too");
  assert.equal(server.count(), 5, "no connection more than the failures needed");
  const errors = await page.evaluate(() => window.errors);
  assert.deepEqual(errors.filter((c) => c !== "unknown_event_type").sort(), ["internal_error", "internal_error", "timeout"]);
  assert.ok(errors.includes("unknown_event_type"));
  assert.deepEqual(problems, []);
  await page.evaluate(() => window.sb.close());
  server.close();
});
