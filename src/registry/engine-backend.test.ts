// pythonExecutorOptionsOf: a serving.properties, loaded by the real config loader, becomes createPythonExecutor
// options; option.checkpoint and option.training_mp_size reach the executor (training_mp_size only when set), and a
// checkpoint written at degree 2 by `python3 -m lmi_executor.shard_checkpoint` loads through Node's supervisor at
// degree 1 and 2 and generates the zoo model's transformers greedy golden.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { loadModelConfig } from "../config/model-config.ts";
import { ConfigError, ExecutorError } from "../errors.ts";
import { createPythonExecutor } from "../executor/python/python-executor.ts";
import { PlanBuilder } from "../executor/python/testing/plan-builder.ts";
import { PYTHON, PYTHON_DIR, torchMissing } from "../executor/python/testing/python-env.ts";
import { buildEngine } from "./engine-backend.ts";
import { pythonExecutorOptionsOf } from "./executor-spec.ts";

const ZOO_LLAMA = fileURLToPath(new URL("../../models/zoo/llama", import.meta.url));

function configOf(lines: string[], env: NodeJS.ProcessEnv = {}) {
  const dir = mkdtempSync(join(tmpdir(), "ebcfg-"));
  writeFileSync(join(dir, "serving.properties"), ["engine=Python", ...lines, ""].join("\n"));
  return { dir, config: loadModelConfig({ modelDir: dir, env }).config };
}

describe("pythonExecutorOptionsOf", () => {
  it("carries option.checkpoint and an explicit option.training_mp_size", () => {
    const { dir, config } = configOf([
      "option.checkpoint=ckpt/ds_inference_config.json",
      "option.training_mp_size=4",
      "option.dtype=fp16",
      "option.tensor_parallel_degree=2",
    ]);
    const o = pythonExecutorOptionsOf(dir, config);
    assert.equal(o.modelDir, dir);
    assert.equal(o.checkpoint, "ckpt/ds_inference_config.json");
    assert.equal(o.trainingMpSize, 4);
    assert.equal(o.dtype, "fp16");
    assert.equal(o.tensorParallelDegree, 2);
  });

  it("leaves training_mp_size to the checkpoint when only its default (1) applies", () => {
    const { dir, config } = configOf(["option.checkpoint=/abs/ckpt", "option.dtype=bf16"]);
    assert.equal(config.trainingMpSize, 1, "the schema default");
    const o = pythonExecutorOptionsOf(dir, config);
    assert.equal(o.checkpoint, "/abs/ckpt");
    assert.equal(o.trainingMpSize, undefined);
  });

  it("takes both from OPTION_* environment variables, and passes neither when unset", () => {
    const env = { OPTION_CHECKPOINT: "tp2", OPTION_TRAINING_MP_SIZE: "2", OPTION_DTYPE: "fp32" };
    const a = configOf([], env);
    const o = pythonExecutorOptionsOf(a.dir, a.config);
    assert.equal(o.checkpoint, "tp2");
    assert.equal(o.trainingMpSize, 2);
    const b = configOf(["option.dtype=fp32"]);
    const none = pythonExecutorOptionsOf(b.dir, b.config);
    assert.equal(none.checkpoint, undefined);
    assert.equal(none.trainingMpSize, undefined);
  });
});

describe("a re-sharded checkpoint through createPythonExecutor (CPU torch)", {
  skip: torchMissing ?? false,
}, () => {
  it("a degree-2 checkpoint loads at degree 1 and 2 with the golden greedy tokens; a wrong degree is refused", async () => {
    const out = join(mkdtempSync(join(tmpdir(), "lmi-reshard-")), "llama-tp2");
    const r = spawnSync(PYTHON, ["-m", "lmi_executor.shard_checkpoint", ZOO_LLAMA, out, "--tp", "2"], {
      cwd: PYTHON_DIR,
      encoding: "utf8",
    });
    assert.equal(r.status, 0, r.stderr);
    const golden = JSON.parse(readFileSync(join(ZOO_LLAMA, "golden.json"), "utf8")) as {
      cases: Array<{ input_ids: number[]; greedy: { ids: number[] } }>;
    };
    const { input_ids: prompt, greedy } = golden.cases[0] as {
      input_ids: number[];
      greedy: { ids: number[] };
    };
    const steps = 8;
    // The checkpoint folder is a complete model directory (config.json and tokenizer copied next to the parts).
    const { config } = configOf([
      `option.model_id=${out}`,
      "option.checkpoint=ds_inference_config.json",
      "option.training_mp_size=2",
      "option.dtype=fp32",
    ]);
    for (const tp of [1, 2]) {
      const ex = createPythonExecutor({
        ...pythonExecutorOptionsOf(out, config),
        tensorParallelDegree: tp,
        pythonExecutable: PYTHON,
        device: "cpu",
        blockSize: 4,
        cpuKvCacheBytes: 1 << 20,
        onLog: () => {},
      });
      try {
        await ex.load();
        const prof = await ex.profile();
        await ex.initCache(prof.numBlocks);
        const pb = new PlanBuilder(prof.numBlocks, 4);
        let plan = pb.plan({ add: [{ id: "a", prompt }] });
        pb.record(plan, await ex.execute(plan));
        for (let s = 1; s < steps; s++) {
          plan = pb.plan({ run: [{ id: "a", n: 1 }] });
          pb.record(plan, await ex.execute(plan));
        }
        assert.deepEqual(pb.generated("a"), greedy.ids.slice(0, steps), `degree ${tp}`);
      } finally {
        await ex.shutdown();
      }
    }
    const wrong = createPythonExecutor({
      ...pythonExecutorOptionsOf(out, config),
      trainingMpSize: 1,
      pythonExecutable: PYTHON,
      device: "cpu",
      onLog: () => {},
    });
    try {
      await assert.rejects(wrong.load(), (e: Error) => {
        assert.ok(e instanceof ExecutorError);
        assert.match(
          e.message,
          /option\.training_mp_size=1 but checkpoint .* saved at tensor-parallel degree 2/,
        );
        return true;
      });
    } finally {
      await wrong.shutdown();
    }
  });
});

describe("option.kv_cache_dtype", () => {
  it("reaches the GPU executor's options (auto unless set)", () => {
    const a = configOf(["option.kv_cache_dtype=fp8"]);
    assert.equal(pythonExecutorOptionsOf(a.dir, a.config).kvCacheDtype, "fp8");
    const b = configOf([]);
    assert.equal(pythonExecutorOptionsOf(b.dir, b.config).kvCacheDtype, "auto");
  });

  it("fp8 is refused by the CPU executor, by name, before anything loads", async () => {
    for (const v of ["fp8", "fp8_e4m3"]) {
      const { dir, config } = configOf([`option.kv_cache_dtype=${v}`]);
      const logger = { warn() {}, info() {}, error() {}, debug() {} } as unknown as Parameters<
        typeof buildEngine
      >[0]["logger"];
      await assert.rejects(buildEngine({ modelDir: dir, config, executor: "cpu", logger }), (e: Error) => {
        assert.ok(e instanceof ConfigError);
        assert.match(e.message, new RegExp(`option\\.kv_cache_dtype=${v} needs the GPU executor`));
        return true;
      });
    }
  });

  it("an unknown value fails in the config layer, naming the key", () => {
    assert.throws(
      () => configOf(["option.kv_cache_dtype=int4"]),
      (e: Error) => /option\.kv_cache_dtype/.test(e.message),
    );
  });
});
