// Random bytes (not just random text) at the properties files: serving.properties and
// config.properties made of arbitrary bytes (invalid UTF-8, NULs, stray escapes, mixed with real keys)
// either load or fail with a ConfigError whose every problem names its file; nothing else escapes.
// test/config/fuzz.test.ts covers random *text* and schema values; this adds the byte level.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import fc from "fast-check";
import { loadModelConfig } from "../../src/config/model-config.ts";
import { loadServerConfig } from "../../src/config/server-config.ts";
import { ConfigError } from "../../src/errors.ts";
import { recordFigures, rounds } from "./helpers.ts";

const realLines = fc.constantFrom(
  "option.rolling_batch=auto\n",
  "option.max_rolling_batch_size=\\u00ff\n",
  "engine=Python\n",
  "job_queue_size=-1\n",
  "option.tensor_parallel_degree=max\n",
  "inference_address=http://0.0.0.0:1\n",
  "\\\n",
  "#\n",
);
const bytes = fc
  .array(
    fc.oneof(
      fc.uint8Array({ maxLength: 40 }),
      realLines.map((l) => Buffer.from(l, "latin1")),
    ),
    { maxLength: 8 },
  )
  .map((parts) => Buffer.concat(parts.map((p) => Buffer.from(p))));

test("random bytes in serving.properties and config.properties: a config or a ConfigError naming the file", () => {
  const root = mkdtempSync(join(tmpdir(), "rel-fuzz-cfg-"));
  const outcomes = { loaded: 0, configError: 0 };
  let n = 0;
  try {
    fc.assert(
      fc.property(bytes, bytes, (servingBytes, serverBytes) => {
        const dir = join(root, String(n++));
        mkdirSync(dir);
        writeFileSync(join(dir, "serving.properties"), servingBytes);
        writeFileSync(join(dir, "config.properties"), serverBytes);
        try {
          const server = loadServerConfig({ configFile: join(dir, "config.properties"), env: {} });
          loadModelConfig({ modelDir: dir, env: {}, server });
          outcomes.loaded++;
        } catch (err) {
          assert.ok(err instanceof ConfigError, `not a ConfigError: ${(err as Error).stack}`);
          for (const p of err.problems) assert.match(p, /(serving|config)\.properties|env /, p);
          outcomes.configError++;
        }
      }),
      // Two valid pairs come first, so the "loads" outcome is always exercised (an empty model folder
      // loads only with engine=Python: with nothing else the engine cannot be inferred).
      {
        numRuns: rounds(500, 5000),
        examples: [
          [Buffer.from("engine=Python\n"), Buffer.alloc(0)],
          [Buffer.from("engine=Python\noption.rolling_batch=auto\n"), Buffer.from("job_queue_size=10\n")],
        ],
      },
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  assert.ok(
    outcomes.configError > 0 && outcomes.loaded > 0,
    `the generator reaches both outcomes: ${JSON.stringify(outcomes)}`,
  );
  recordFigures("fuzz-config", {
    promise: "random bytes in the properties files give a config or a ConfigError naming the file",
    files: n,
    ...outcomes,
  });
});
