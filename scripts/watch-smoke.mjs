// make watch-smoke: the hot-reload development loop, end to end.
//
// A redis-server; the emulator with --functions-url in front of `make watch`
// (cargo lambda watch, Invoke API on 127.0.0.1); a client subscribes and an
// HTTP publish reaches it; then ws-message's source is edited (the pong's
// timestamp becomes 4242) and the next ping is answered by the rebuilt
// function. The file is restored whatever happens. Prints how long each
// step took.
import { spawn } from "node:child_process";
import { mkdtempSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Switchboard } from "../clients/js/src/index.js";
import { SECRET, eventually, freePort, publish, startEmulator, startRedis, token } from "../clients/js/test/harness.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const HANDLER = path.join(root, "functions/ws-message/src/lib.rs");
const ORIGINAL = "ServerReply::Pong { id, timestamp: switchboard::time::now_millis() }";
const EDITED = "ServerReply::Pong { id, timestamp: 4242 }";
const source = readFileSync(HANDLER, "utf8");
if (!source.includes(ORIGINAL)) throw new Error(`${HANDLER} no longer has the line this smoke test edits: ${ORIGINAL}`);

const started = Date.now();
const say = (what) => console.log(`watch-smoke: ${what} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
const restore = () => writeFileSync(HANDLER, source);
let watch;
const stopWatch = () => {
  // cargo lambda watch runs the functions as its children: end the whole group.
  if (watch?.pid) {
    try {
      process.kill(-watch.pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
};
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    restore();
    stopWatch();
    process.exit(130);
  });
}

const redis = await startRedis();
const port = await freePort();
const emu = await startEmulator({ redis, args: ["--functions-url", `http://127.0.0.1:${port}`] });
const queue = (name) => `${emu.sqs}/000000000000/${name}`;
// Its build and function logs go to a file, shown when the smoke test fails.
const log = path.join(mkdtempSync(path.join(tmpdir(), "watch-smoke-")), "cargo-lambda-watch.log");
const logFd = openSync(log, "w");
watch = spawn("make", ["-s", "watch", `WATCH_PORT=${port}`], {
  cwd: root,
  detached: true,
  stdio: ["ignore", logFd, logFd],
  env: {
    ...process.env,
    REDIS_URL: redis.url,
    JWT_SECRET: SECRET,
    KEY_PREFIX: `watch${port}`,
    WEBHOOK_QUEUE_URL: queue("switchboard-webhooks"),
    WEBHOOK_DLQ_URL: queue("switchboard-webhooks-dlq"),
    EVENTS_QUEUE_URL: queue("switchboard-events"),
    AWS_ENDPOINT_URL_SQS: emu.sqs,
    AWS_ACCESS_KEY_ID: "local",
    AWS_SECRET_ACCESS_KEY: "local",
    AWS_REGION: "us-east-1",
    RUST_LOG: "warn",
  },
});
let sb;
let code = 1;
try {
  sb = new Switchboard({ url: emu.ws, token: token("42"), backoff: { baseMs: 200, maxMs: 2_000 }, connectTimeoutMs: 120_000 });
  const got = [];
  sb.subscribe(["call.*"], (e) => got.push(e));
  // The first invocations build the functions (cached when the debug build exists).
  await eventually("the client connected through cargo lambda watch", () => sb.state === "connected", 600_000);
  say("connected and subscribed through the watched functions");
  const id = await publish(emu, "call.incoming", undefined, { via: "watch" });
  await eventually("the published event", () => got.some((e) => e.id === id), 120_000);
  say("an HTTP publish reached the client");
  const before = await sb.request({ action: "ping" });
  if (before.timestamp === 4242) throw new Error("the pong was already edited");
  writeFileSync(HANDLER, source.replace(ORIGINAL, EDITED));
  say("edited ws-message's source");
  let pong;
  await eventually(
    "the rebuilt ws-message to answer a ping",
    async () => {
      pong = await sb.request({ action: "ping" }).catch(() => null);
      return pong?.timestamp === 4242;
    },
    600_000,
  );
  say("the next frame was answered by the edited handler");
  code = 0;
} catch (error) {
  console.error(`watch-smoke: FAILED: ${error.stack ?? error}`);
  console.error(`--- the end of ${log} ---\n${readFileSync(log, "utf8").split("\n").slice(-60).join("\n")}`);
} finally {
  restore();
  sb?.close();
  stopWatch();
  emu.stop();
  redis.stop();
}
process.exit(code);
