// What API Gateway checks before any function runs, played by the
// emulator: the authorizer's identity source. The shipped client, in
// Chromium, against the emulator configured with the template's default
// `AuthorizerIdentitySource` (read from infra/template.yaml, as a
// deployment would take it): it connects and receives. With a source the
// client does not send, API Gateway answers 401 and the client keeps
// trying, never connected.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { clientPage, eventually, publish, sleep, startEmulator, token, launchChromium } from "./harness.js";

const here = path.dirname(fileURLToPath(import.meta.url));

/** The template's default for a parameter. */
function templateDefault(parameter) {
  const template = readFileSync(path.resolve(here, "../../../infra/template.yaml"), "utf8");
  const block = template.split(`\n  ${parameter}:\n`)[1];
  assert.ok(block, `infra/template.yaml has no parameter ${parameter}`);
  return block.match(/^\s+Default: (.+)$/m)[1].trim();
}

/** A page origin that serves the client module. */
async function pageServer() {
  const server = http.createServer(clientPage("gatekeeping"));
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { base: `http://127.0.0.1:${server.address().port}`, close: () => server.close() };
}

/** The handshake's status, as a raw HTTP upgrade with these subprotocols gets it. */
function handshakeStatus(wsUrl, protocols) {
  const url = new URL(wsUrl.replace(/^ws/, "http"));
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      headers: {
        connection: "Upgrade",
        upgrade: "websocket",
        "sec-websocket-version": "13",
        "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
        "sec-websocket-protocol": protocols.join(", "),
      },
    });
    req.on("upgrade", (res, socket) => {
      socket.destroy();
      resolve(res.statusCode);
    });
    req.on("response", (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on("error", reject);
    req.end();
  });
}

let browser;
let pages;
before(async () => {
  browser = await launchChromium();
  pages = await pageServer();
});
after(async () => {
  await browser?.close();
  pages?.close();
});

async function clientIn(page, url, jwt) {
  await page.goto(pages.base);
  await page.evaluate(
    async ([url, jwt]) => {
      const { Switchboard } = await import("/index.js");
      window.got = [];
      window.sb = new Switchboard({ url, token: jwt, backoff: { baseMs: 50, maxMs: 200 } });
      window.sb.subscribe(["call.*"], (e) => window.got.push(e.id));
    },
    [url, jwt],
  );
}

test("with the template's default identity source, the shipped client connects from Chromium and receives", async () => {
  const source = templateDefault("AuthorizerIdentitySource");
  assert.equal(source, "route.request.header.Sec-WebSocket-Protocol", "the client sends its token as a subprotocol");
  const emu = await startEmulator({ args: ["--identity-source", source] });
  const page = await (await browser.newContext()).newPage();
  try {
    await clientIn(page, emu.ws, token("42"));
    await eventually("connected", async () => (await page.evaluate(() => window.sb.state)) === "connected");
    const id = await publish(emu, "call.incoming");
    await eventually("the event in the page", async () => (await page.evaluate(() => window.got)).includes(id));
    // The token in the URL alone is what this identity source refuses.
    assert.equal(await handshakeStatus(`${emu.ws}?token=${token("42")}`, []), 401);
  } finally {
    await page.evaluate(() => window.sb?.close()).catch(() => {});
    emu.stop();
  }
});

test("with an identity source the client does not send, API Gateway's 401 keeps it out, and it keeps trying", async () => {
  const emu = await startEmulator({ args: ["--identity-source", "route.request.querystring.token"] });
  const page = await (await browser.newContext()).newPage();
  try {
    assert.equal(await handshakeStatus(emu.ws, ["switchboard", token("42")]), 401);
    await clientIn(page, emu.ws, token("42"));
    await sleep(1500);
    assert.equal(await page.evaluate(() => window.sb.state), "connecting", "never connected, still trying");
    // The same client with the token where this stack looks for it connects.
    await page.evaluate((url) => {
      window.sb.close();
      window.sb = new window.sb.constructor({ url, token: "unused" });
    }, `${emu.ws}?token=${token("42")}`);
    await eventually("connected with ?token=", async () => (await page.evaluate(() => window.sb.state)) === "connected");
  } finally {
    await page.evaluate(() => window.sb?.close()).catch(() => {});
    emu.stop();
  }
});
