// `lmi config` through the real command line (bin/lmi.mjs): JSON shape, exit status 2 with every problem
// on stderr, the human table with its "here" column, and --schema.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { test } from "node:test";
import { SCHEMA } from "../../src/config/schema/index.ts";

const BIN = resolve(import.meta.dirname, "../../bin/lmi.mjs");

function lmi(args: string[], env: Record<string, string> = {}) {
  const res = spawnSync(process.execPath, [BIN, "config", ...args], {
    encoding: "utf8",
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env },
  });
  return { code: res.status, stdout: res.stdout, stderr: res.stderr };
}

function modelDir(props: string): string {
  const dir = mkdtempSync(join(tmpdir(), "cli-"));
  writeFileSync(join(dir, "serving.properties"), props);
  return dir;
}

test("--json prints one typed JSON object with properties, sources, warnings and notes", () => {
  const dir = modelDir("engine=DeepSpeed\noption.model_id=gpt2\noption.max_rolling_batch_size=4\n");
  const r = lmi([dir, "--json"], { OPTION_DTYPE: "FP16" });
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.deepEqual(Object.keys(out), ["properties", "sources", "warnings", "notes"]);
  assert.equal(out.properties.engine, "Python");
  assert.equal(out.properties["option.mpi_mode"], true);
  assert.equal(out.properties["option.max_rolling_batch_size"], 4);
  assert.equal(out.properties["option.dtype"], "fp16");
  assert.equal(out.sources["option.mpi_mode"], "alias of engine=DeepSpeed");
  assert.equal(out.sources["option.dtype"], "env OPTION_DTYPE");
  assert.equal(out.properties.job_queue_size, 1000);
  assert.equal(out.sources.job_queue_size, "default");
  assert.match(out.notes["option.return_tuple"], /DeepSpeed/);
});

test("invalid configuration exits 2 and lists every problem on stderr", () => {
  const dir = modelDir("option.model_id=gpt2\noption.dtype=fp8\noption.rolling_batch=trtllm\n");
  const r = lmi([dir, "--json"], { OPTION_MAX_ROLLING_BATCH_SIZE: "lots" });
  assert.equal(r.code, 2);
  assert.equal(r.stdout, "");
  assert.match(r.stderr, /^Invalid configuration \(3 problems\):/);
  assert.match(r.stderr, /serving\.properties:2: option\.dtype: invalid value "fp8"/);
  assert.match(
    r.stderr,
    /serving\.properties:3: option\.rolling_batch=trtllm needs the NVIDIA TensorRT-LLM runtime/,
  );
  assert.match(
    r.stderr,
    /env OPTION_MAX_ROLLING_BATCH_SIZE: option\.max_rolling_batch_size: invalid value "lots"/,
  );
});

test("the text form is a table with source and here columns, then the warnings", () => {
  const dir = modelDir("option.model_id=gpt2\noption.rolling_batsh=vllm\n");
  const r = lmi([dir]);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.split("\n");
  assert.match(lines[0], /^KEY\s+VALUE\s+SOURCE\s+HERE$/);
  assert.ok(
    lines.some((l) => /^option\.model_id\s+gpt2\s+\S+serving\.properties:1\s+same; resolved/.test(l)),
  );
  assert.match(
    r.stdout,
    /Warnings:\n {2}- \S+:2: unknown key option\.rolling_batsh \(did you mean option\.rolling_batch\?\)/,
  );
});

test("without MODEL_DIR it describes the startup model from the environment (HF_MODEL_ID)", () => {
  const r = lmi(["--json"], {
    HF_MODEL_ID: "org/model",
    HF_TASK: "text-generation",
    SERVING_BATCH_SIZE: "4",
  });
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.equal(out.properties["option.model_id"], "org/model");
  assert.equal(out.sources["option.task"], "env HF_TASK");
  assert.equal(out.properties.batch_size, 4);
  assert.equal(out.properties["option.rolling_batch"], "disable");
});

test("--schema prints every key of the table", () => {
  const r = lmi(["--schema"]);
  assert.equal(r.code, 0, r.stderr);
  for (const e of SCHEMA) assert.ok(r.stdout.includes(`${e.key}  [${e.scope}]`), e.key);
  const json = JSON.parse(lmi(["--schema", "--json"]).stdout);
  assert.equal(json.length, SCHEMA.length);
});
