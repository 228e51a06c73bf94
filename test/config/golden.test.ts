// Golden tests: each folder under test/fixtures/config holds a serving.properties (optional), case.json
// ({description, env, modelDirArg}) and expected.json, the `lmi config --json` output it must produce (or
// {"exitCode": 2, "problems": [...]}). The fixture path is written as $MODEL_DIR so goldens are portable.
// Regenerate after a deliberate change with UPDATE_GOLDENS=1 and review the diff.
import assert from "node:assert/strict";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { test } from "node:test";
import { runConfig } from "../../src/config/config-command.ts";
import { ConfigError } from "../../src/errors.ts";

const ROOT = resolve(import.meta.dirname, "../fixtures/config");

interface Case {
  description: string;
  env: Record<string, string>;
  modelDirArg: boolean;
}

function run(dir: string, c: Case): unknown {
  const env = Object.fromEntries(Object.entries(c.env).map(([k, v]) => [k, v.replaceAll("$MODEL_DIR", dir)]));
  try {
    return JSON.parse(runConfig({ modelDir: c.modelDirArg ? dir : undefined, json: true, env }));
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return { exitCode: 2, problems: err.problems };
  }
}

const cases = readdirSync(ROOT, { withFileTypes: true }).filter((d) => d.isDirectory());

test("there are golden cases, including every example of spec §7.3", () => {
  const names = cases.map((d) => d.name);
  for (const n of ["scheduler", "lmi-dist", "vllm", "hf-static-streaming", "env-only"]) {
    assert.ok(names.includes(`spec-7.3-${n}`), `missing spec-7.3-${n}`);
  }
});

for (const d of cases) {
  const dir = join(ROOT, d.name);
  const c = JSON.parse(readFileSync(join(dir, "case.json"), "utf8")) as Case;
  test(`golden ${d.name}: ${c.description}`, () => {
    const actual = JSON.parse(JSON.stringify(run(dir, c)).replaceAll(dir, "$MODEL_DIR"));
    const file = join(dir, "expected.json");
    if (process.env.UPDATE_GOLDENS === "1") writeFileSync(file, `${JSON.stringify(actual, null, 2)}\n`);
    assert.deepEqual(actual, JSON.parse(readFileSync(file, "utf8")));
  });
}
