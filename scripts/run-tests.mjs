#!/usr/bin/env node
// Runs every *.test.ts under src/ and test/ with node's test runner (Node 20 has no glob in --test).
// Extra arguments are passed through: `npm test -- --test-name-pattern=scheduler`.
// Files or folders given as arguments narrow the run: `npm test -- src/config`.
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";

function collect(dir, out) {
  let entries;
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of entries) {
    if (name === "node_modules" || name.startsWith(".")) continue;
    const p = join(dir, name);
    const st = statSync(p);
    if (st.isDirectory()) collect(p, out);
    else if (name.endsWith(".test.ts")) out.push(p);
  }
  return out;
}

const args = process.argv.slice(2);
const paths = args.filter((a) => !a.startsWith("-"));
const flags = args.filter((a) => a.startsWith("-"));
const roots = paths.length > 0 ? paths : ["src", "test"];
const files = roots.flatMap((r) => (r.endsWith(".test.ts") ? [r] : collect(r, []))).sort();
if (files.length === 0) {
  console.error("no test files found under", roots.join(", "));
  process.exit(1);
}
const res = spawnSync(
  process.execPath,
  ["--import", "tsx", "--test", "--test-concurrency=2", ...flags, ...files],
  { stdio: "inherit" },
);
process.exit(res.status ?? 1);
