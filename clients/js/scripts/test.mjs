// `npm test`: node --test over test/, with the global WebSocket turned on
// where Node (20, 21) still keeps it behind a flag.
import { spawnSync } from "node:child_process";

const major = Number(process.versions.node.split(".")[0]);
const flags = major < 22 ? ["--experimental-websocket"] : [];
const files = process.argv.slice(2);
const run = spawnSync(process.execPath, [...flags, "--test", "--test-concurrency=1", ...(files.length ? files : ["test/"])], {
  stdio: "inherit",
});
process.exit(run.status ?? 1);
