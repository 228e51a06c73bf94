// Property-based tests (fast-check): the properties parser and the schema get random input; only a
// ConfigError whose every line starts with a location ever comes out, never a crash. Also a round trip:
// any key/value written with Java escapes parses back to itself.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import fc from "fast-check";
import { loadModelConfig } from "../../src/config/model-config.ts";
import { parseProperties } from "../../src/config/properties-parser.ts";
import { SCHEMA } from "../../src/config/schema/index.ts";
import { loadServerConfig } from "../../src/config/server-config.ts";
import { ConfigError } from "../../src/errors.ts";

/** Java Properties.store-style escaping: everything special is escaped, so parsing must give it back. */
function escapeJava(s: string, isKey: boolean): string {
  let out = "";
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    const code = c.charCodeAt(0);
    if (c === "\\") out += "\\\\";
    else if (c === "\n") out += "\\n";
    else if (c === "\r") out += "\\r";
    else if (c === "\t") out += "\\t";
    else if (c === "\f") out += "\\f";
    else if (c === " " && (isKey || i === 0)) out += "\\ ";
    else if ("=:#!".includes(c)) out += `\\${c}`;
    else if (code < 0x20 || code > 0x7e) out += `\\u${code.toString(16).padStart(4, "0")}`;
    else out += c;
  }
  return out;
}

function assertLocated(err: unknown, locations: RegExp): void {
  if (!(err instanceof ConfigError)) throw err;
  assert.ok(err.problems.length > 0);
  for (const p of err.problems) assert.match(p, locations, `problem without a location: ${p}`);
}

test("parser: random text yields entries or a located ConfigError, never a crash", () => {
  fc.assert(
    fc.property(fc.string({ unit: "binary", maxLength: 200 }), (text) => {
      try {
        for (const e of parseProperties(text, "f.properties")) assert.ok(e.line >= 1);
      } catch (err) {
        assertLocated(err, /^f\.properties:\d+: /);
      }
    }),
    { numRuns: 2000 },
  );
  // Backslash-heavy input exercises escapes and continuations.
  fc.assert(
    fc.property(
      fc.array(fc.constantFrom("\\", "u", "0", "a", "=", ":", " ", "\n", "\r", "#", "!", "x", "F"), {
        maxLength: 40,
      }),
      (parts) => {
        try {
          parseProperties(parts.join(""), "f.properties");
        } catch (err) {
          assertLocated(err, /^f\.properties:\d+: malformed \\uXXXX escape/);
        }
      },
    ),
    { numRuns: 2000 },
  );
});

test("parser: escaped keys and values round-trip", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.tuple(
          fc.string({ unit: "binary", minLength: 1, maxLength: 20 }),
          fc.string({ unit: "binary", maxLength: 30 }),
        ),
        {
          maxLength: 8,
        },
      ),
      (pairs) => {
        const text = pairs.map(([k, v]) => `${escapeJava(k, true)}=${escapeJava(v, false)}`).join("\n");
        assert.deepEqual(
          parseProperties(text, "f").map((e) => [e.key, e.value]),
          pairs,
        );
      },
    ),
    { numRuns: 500 },
  );
});

const KNOWN = SCHEMA.map((e) => e.key);
const SAMPLES = [
  "true",
  "False",
  "1",
  "0",
  "-3",
  "4",
  "256",
  "max",
  "fp16",
  "FP16",
  "auto",
  "vllm",
  "lmi-dist",
  "scheduler",
  "disable",
  "deepspeed",
  "tnx",
  "trtllm",
  "huggingface",
  "x",
  "",
  " 7 ",
  "0.5",
  "1e3",
  "djl_python.deepspeed",
  "djl_python.tensorrt_llm",
  "model.py",
  "a=b,c=d",
  "0;1",
  "*",
  "gpu0",
  "DeepSpeed",
  "MPI",
  "PyTorch",
  "Python",
  "bitsandbytes8",
  "awq",
  "smoothquant",
  "bf16",
  "int8",
  "s3://b/m",
  "djl://ai.djl/x",
  "jsonlines",
  "my_fn",
  "http://0.0.0.0:8080",
];

const keyArb = fc.oneof(
  fc.constantFrom(...KNOWN),
  fc.constantFrom(...KNOWN).map((k) => k.replace(/^option\./, "")),
  fc.constantFrom("gpu.maxWorkers", "cpu.minWorkers", "neuron.maxWorkers", "gpu.batch_size"),
  fc.string({ minLength: 1, maxLength: 12 }),
);
const valueArb = fc.oneof(fc.constantFrom(...SAMPLES), fc.string({ maxLength: 12 }));
const envNameArb = fc.oneof(
  fc.constantFrom(
    ...KNOWN.filter((k) => k.startsWith("option.")).map((k) => `OPTION_${k.slice(7).toUpperCase()}`),
  ),
  fc.constantFrom(
    "OPTION_ENGINE",
    "OPTION_ENTRYPOINT",
    "SM_NUM_GPUS",
    "MAX_BATCH_SIZE",
    "ENABLE_CUDA_GRAPHS",
    "CUDA_MEMORY_FRACTION",
    "TENSOR_PARALLEL_DEGREE",
    "SAGEMAKER_NUM_MODEL_WORKERS",
    "SAGEMAKER_STARTUP_TIMEOUT",
    "SERVING_BATCH_SIZE",
    "SERVING_JOB_QUEUE_SIZE",
    "SAGEMAKER_MAX_PAYLOAD_IN_MB",
    "MAX_CONCURRENT_REQUESTS",
    "HF_MODEL_QUANTIZE",
  ),
);

test("schema: random serving.properties + config.properties + env yield a config or located problems", () => {
  const root = mkdtempSync(join(tmpdir(), "fuzz-"));
  let n = 0;
  try {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(keyArb, valueArb), { maxLength: 12 }),
        fc.dictionary(envNameArb, valueArb, { maxKeys: 5 }),
        fc.boolean(),
        fc.array(fc.tuple(keyArb, valueArb), { maxLength: 6 }),
        (pairs, env, withConfigJson, serverPairs) => {
          const dir = join(root, String(n++));
          const file = join(dir, "serving.properties");
          mkdirSync(dir);
          writeFileSync(
            file,
            pairs.map(([k, v]) => `${escapeJava(k, true)}=${escapeJava(v, false)}`).join("\n"),
          );
          if (withConfigJson) writeFileSync(join(dir, "config.json"), "{}");
          const configFile = join(dir, "config.properties");
          writeFileSync(
            configFile,
            serverPairs.map(([k, v]) => `${escapeJava(k, true)}=${escapeJava(v, false)}`).join("\n"),
          );
          const escaped = dir.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
          const located = new RegExp(
            // a file line or env var, optionally followed by "(why)" notes: "f:3 (as rolling_batch, ...)"
            `^(${escaped}(/(serving|config)\\.properties:\\d+)?|(server )?env [A-Za-z0-9_]+)( \\([^)]*\\))*: `,
          );
          try {
            const server = loadServerConfig({ configFile, env });
            assert.ok(Object.isFrozen(server));
            for (const w of server.warnings) assert.match(w, located, `warning without a location: ${w}`);
            const r = loadModelConfig({ modelDir: dir, env, server });
            assert.ok(Object.isFrozen(r.config));
            assert.equal(typeof r.config.engine, "string");
            for (const w of r.warnings) assert.match(w, located, `warning without a location: ${w}`);
          } catch (err) {
            assertLocated(err, located);
          }
        },
      ),
      { numRuns: 400 },
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
