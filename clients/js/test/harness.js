// What the tests against a real switchboard-local share: tokens, free
// ports, a redis-server, the emulator (started and restarted on the same
// ports), an HTTP publish, a TCP proxy whose connections can be cut, and a
// bounded wait. Not a test file (scripts/test.mjs runs test/*.test.js).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHmac, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const BINARY = process.env.SWITCHBOARD_LOCAL ?? path.resolve(here, "../../../target/debug/switchboard-local");
/** What the tests sign with, as JWT_SECRET. */
export const SECRET = "js-client-tests-secret-js-client-tests-0001";
/** The emulator's development secret (no JWT_SECRET: the console mints tokens). */
export const DEV_SECRET = "switchboard-local-dev-secret-NOT-FOR-PRODUCTION";
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Debian's Chromium (`CHROMIUM` to use another). */
export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

/**
 * Chromium, headless, through playwright-core (no browser download).
 * Nothing but loopback is reachable here: no background traffic.
 */
export async function launchChromium() {
  const { chromium } = await import("playwright-core");
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"],
  });
}

if (!existsSync(BINARY)) {
  throw new Error(`${BINARY} is missing: run \`cargo build -p switchboard-local\` (make test does) or set SWITCHBOARD_LOCAL`);
}

/**
 * An HTTP request handler for a test page's origin: the client module at
 * `/index.js` (what a page imports), a blank page titled `title` elsewhere.
 */
export function clientPage(title) {
  const client = readFileSync(path.resolve(here, "../src/index.js"));
  return (req, res) => {
    if (req.url === "/index.js") {
      res.writeHead(200, { "content-type": "text/javascript" });
      return res.end(client);
    }
    res.writeHead(200, { "content-type": "text/html" });
    res.end(`<!doctype html><title>${title}</title>`);
  };
}

/** An HS256 token as the emulator verifies it. */
export function token(user, role = "agent", tenant = "t1", secret = SECRET, channels = undefined) {
  const b64url = (data) => Buffer.from(data).toString("base64url");
  const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64url(JSON.stringify({ sub: user, tenant_id: tenant, role, exp: Math.floor(Date.now() / 1000) + 600, channels }));
  const sig = createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

export async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function untilListening(port, ms = 20_000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const ok = await new Promise((resolve) => {
      const c = net.connect(port, "127.0.0.1", () => {
        c.end();
        resolve(true);
      });
      c.on("error", () => resolve(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`nothing listens on ${port} after ${ms} ms`);
}

export async function startRedis() {
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), "sb-js-redis-"));
  const child = spawn("redis-server", ["--port", String(port), "--save", "", "--appendonly", "no", "--dir", dir], {
    stdio: "ignore",
  });
  await untilListening(port);
  return { url: `redis://127.0.0.1:${port}`, stop: () => child.kill("SIGKILL") };
}

/**
 * A switchboard-local on free ports; `restart()` starts it again on the
 * same ports. `secret: null` runs it with the development secret.
 */
export async function startEmulator({ args = [], env: extra = {}, redis, prefix = `js${randomBytes(4).toString("hex")}`, secret = SECRET } = {}) {
  const ports = { ws: await freePort(), http: await freePort(), sqs: await freePort() };
  let child;
  const launch = async () => {
    const env = { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "error", KEY_PREFIX: prefix, ...extra };
    delete env.JWT_SECRET;
    if (secret) env.JWT_SECRET = secret;
    if (redis) env.REDIS_URL = redis.url;
    child = spawn(
      BINARY,
      ["--ws-port", String(ports.ws), "--http-port", String(ports.http), "--sqs-port", String(ports.sqs), ...args],
      { env, stdio: ["ignore", "ignore", "inherit"] },
    );
    await untilListening(ports.ws);
    await untilListening(ports.http);
  };
  await launch();
  return {
    ws: `ws://127.0.0.1:${ports.ws}/local`,
    http: `http://127.0.0.1:${ports.http}`,
    sqs: `http://127.0.0.1:${ports.sqs}`,
    ports,
    secret: secret ?? DEV_SECRET,
    kill: () => new Promise((resolve) => {
      child.once("exit", resolve);
      child.kill("SIGKILL");
    }),
    restart: launch,
    stop: () => child.kill("SIGTERM"),
  };
}

/** Publishes with a service token; returns the event id. */
export async function publish(emu, type = "call.incoming", target = undefined, data = {}) {
  const r = await fetch(`${emu.http}/v1/events`, {
    method: "POST",
    headers: { authorization: `Bearer ${token("svc", "service", "t1", emu.secret)}`, "content-type": "application/json" },
    body: JSON.stringify({ type, target, data }),
  });
  const text = await r.text();
  assert.equal(r.status, 200, text);
  return JSON.parse(text).event_id;
}

export async function eventually(what, check, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(20);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/**
 * A TCP proxy to `port`: `drop()` cuts every connection through it (a
 * network that fails, not a close), `block()`/`unblock()` refuse new ones.
 */
export async function tcpProxy(port) {
  const sockets = new Set();
  let blocked = false;
  const server = net.createServer((down) => {
    if (blocked) return down.destroy();
    const up = net.connect(port, "127.0.0.1");
    for (const s of [down, up]) {
      sockets.add(s);
      s.on("error", () => {});
      s.on("close", () => sockets.delete(s));
    }
    down.pipe(up).pipe(down);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: server.address().port,
    drop: () => {
      for (const s of sockets) s.destroy();
    },
    block: () => {
      blocked = true;
    },
    unblock: () => {
      blocked = false;
    },
    close: () => server.close(),
  };
}
