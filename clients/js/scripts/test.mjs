// `npm test`: node --test over test/*.test.js (test/harness.js is shared
// code, not a test), one file at a time (each starts its own emulators),
// with the global WebSocket turned on where Node 20 and 21 keep it behind
// a flag. `npm test -- test/unit.test.js` runs one file.
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";

const [major, minor] = process.versions.node.split(".").map(Number);
if (major < 20 || (major === 20 && minor < 10)) {
  console.error(`Node ${process.versions.node} is too old for these tests: they need 20.10 or later (a WebSocket class).`);
  process.exit(1);
}
const flags = major < 22 ? ["--experimental-websocket"] : [];
const given = process.argv.slice(2);
const files = given.length ? given : readdirSync("test").filter((f) => f.endsWith(".test.js")).sort().map((f) => `test/${f}`);
// A test gets two minutes; the whole run ten (a client left open by a
// failed test keeps its file's process alive: better a clear failure).
const run = spawnSync(process.execPath, [...flags, "--test", "--test-concurrency=1", "--test-timeout=120000", ...files], {
  stdio: "inherit",
  timeout: 10 * 60_000,
  killSignal: "SIGKILL",
});
if (run.error) console.error(`npm test: ${run.error.message}`);
process.exit(run.status ?? 1);
