// Precedence between serving.properties, config.properties and the environment (spec §1.2), the TGI names,
// engine aliases and the cross-key rules, through the public loaders.
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { loadModelConfig } from "../../src/config/model-config.ts";
import { loadServerConfig } from "../../src/config/server-config.ts";
import { ConfigError } from "../../src/errors.ts";

function modelDir(props: string, files: Record<string, string> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), "model-"));
  writeFileSync(join(dir, "serving.properties"), props);
  for (const [name, body] of Object.entries(files)) writeFileSync(join(dir, name), body);
  return dir;
}

function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${err}`);
    return err.problems;
  }
  assert.fail("expected a ConfigError");
}

test("serving.properties beats OPTION_*, which only fills absent keys", () => {
  const dir = modelDir("option.model_id=gpt2\noption.dtype=fp32\n");
  const r = loadModelConfig({
    modelDir: dir,
    env: { OPTION_DTYPE: "fp16", OPTION_MAX_ROLLING_BATCH_SIZE: "8" },
  });
  assert.equal(r.config.dtype, "fp32");
  assert.equal(r.sources["option.dtype"], `${dir}/serving.properties:2`);
  assert.equal(r.config.maxRollingBatchSize, 8);
  assert.equal(r.sources["option.max_rolling_batch_size"], "env OPTION_MAX_ROLLING_BATCH_SIZE");
});

test("OPTION_ names: upper case is lowercased, mixed case kept, ENTRYPOINT and ENGINE special", () => {
  const r = loadModelConfig({
    env: {
      OPTION_MODEL_ID: "gpt2",
      OPTION_output_formatter: "jsonlines",
      OPTION_ENTRYPOINT: "djl_python.huggingface",
      OPTION_ENGINE: "MPI",
    },
  });
  assert.equal(r.config.outputFormatter, "jsonlines");
  assert.equal(r.config.entryPoint, "djl_python.huggingface");
  assert.equal(r.sources["option.entryPoint"], "env OPTION_ENTRYPOINT");
  assert.equal(r.config.engineAlias, "MPI");
  assert.equal(r.config.mpiMode, true);
});

test("SERVING_* beats config.properties, which beats defaults; SageMaker request size overwrites", () => {
  const dir = mkdtempSync(join(tmpdir(), "conf-"));
  const file = join(dir, "config.properties");
  writeFileSync(
    file,
    "job_queue_size=10\nmax_request_size=2048\nchunked_read_timeout=30\njob_queue_size=11\nmodel_stor=/x\n",
  );
  const s = loadServerConfig({
    configFile: file,
    env: { SERVING_JOB_QUEUE_SIZE: "20", SAGEMAKER_MAX_REQUEST_SIZE: "1024" },
  });
  assert.equal(s.jobQueueSize, 20);
  assert.equal(s.sources.job_queue_size, "env SERVING_JOB_QUEUE_SIZE");
  assert.equal(s.maxRequestSize, 1024);
  assert.equal(s.chunkedReadTimeout, 30);
  assert.equal(s.sources.chunked_read_timeout, `${file}:3`);
  assert.equal(s.inferenceAddress, "http://127.0.0.1:8080");
  assert.deepEqual(s.warnings, [
    `${file}:4: job_queue_size is set again (first at ${file}:1); the later value wins`,
    `${file}:5: unknown server key model_stor (did you mean model_store?); ignored`,
  ]);
  assert.equal(
    loadServerConfig({ env: { SAGEMAKER_MAX_PAYLOAD_IN_MB: "2" } }).maxRequestSize,
    2 * 1024 * 1024,
  );
  assert.equal(loadServerConfig({ env: {}, overrides: { model_store: "/m" } }).modelStore, "/m");
  assert.ok(Object.isFrozen(s));
});

test("TGI/SageMaker names map onto LMI names only when those are unset", () => {
  const env = {
    SM_NUM_GPUS: "4",
    MAX_BATCH_SIZE: "64",
    MAX_BATCH_PREFILL_TOKENS: "2048",
    HF_MODEL_QUANTIZE: "awq",
    HF_MODEL_TRUST_REMOTE_CODE: "TRUE",
    ENABLE_CUDA_GRAPHS: "true",
    CUDA_MEMORY_FRACTION: "0.5",
    MAX_CONCURRENT_REQUESTS: "7",
  };
  const r = loadModelConfig({ env: { ...env, OPTION_MODEL_ID: "m" } });
  assert.equal(r.config.tensorParallelDegree, 4);
  assert.equal(r.sources["option.tensor_parallel_degree"], "env TENSOR_PARALLEL_DEGREE (from SM_NUM_GPUS)");
  assert.equal(r.config.maxRollingBatchSize, 64);
  assert.equal(r.config.maxRollingBatchPrefillTokens, 2048);
  assert.equal(r.config.quantize, "awq");
  assert.equal(r.config.trustRemoteCode, true);
  assert.equal(r.config.enforceEager, false, "ENABLE_CUDA_GRAPHS=true means enforce_eager=false");
  assert.equal(r.config.gpuMemoryUtilization, 0.5);
  assert.equal(loadServerConfig({ env }).jobQueueSize, 7);
  const kept = loadModelConfig({ env: { ...env, OPTION_MODEL_ID: "m", OPTION_MAX_ROLLING_BATCH_SIZE: "3" } });
  assert.equal(kept.config.maxRollingBatchSize, 3);
  assert.equal(
    loadModelConfig({ env: { OPTION_MODEL_ID: "m", ENABLE_CUDA_GRAPHS: "false" } }).config.enforceEager,
    true,
  );
});

test("engine aliases: DeepSpeed, FasterTransformer, MPI -> Python + mpi_mode + entry point", () => {
  for (const [alias, entry] of [
    ["DeepSpeed", "djl_python.deepspeed"],
    ["FasterTransformer", "djl_python.fastertransformer"],
    ["MPI", "djl_python.huggingface"],
  ]) {
    const r = loadModelConfig({ modelDir: modelDir(`engine=${alias}\noption.model_id=gpt2\n`), env: {} });
    assert.equal(r.properties.engine, "Python");
    assert.equal(r.properties["option.mpi_mode"], true);
    assert.equal(r.sources["option.mpi_mode"], `alias of engine=${alias}`);
    assert.equal(r.properties["option.entryPoint"], entry);
  }
  const withPy = loadModelConfig({
    modelDir: modelDir("engine=DeepSpeed\noption.mpi_mode=false\n", { "model.py": "" }),
    env: {},
  });
  assert.equal(withPy.config.entryPoint, "model.py", "a model.py beats the alias's entry point, as in DJL");
  assert.ok(withPy.warnings.some((w) => /mpi_mode=false is overridden/.test(w)));
});

test("engine inference: config.json or model_id gives Python; Java engines are rejected by name", () => {
  const r = loadModelConfig({ modelDir: modelDir("", { "config.json": "{}" }), env: {} });
  assert.equal(r.config.engine, "Python");
  assert.equal(r.sources.engine, "inferred: config.json in the model dir");
  const [p] = problemsOf(() => loadModelConfig({ modelDir: modelDir("", { "model.onnx": "" }), env: {} }));
  assert.match(
    p,
    /^\/.*: engine: "OnnxRuntime" \(inferred: model\.onnx in the model dir\) is a DJL Java engine/,
  );
  const [q] = problemsOf(() => loadModelConfig({ modelDir: modelDir(""), env: {} }));
  assert.match(q, /cannot infer the engine/);
});

test("SageMaker model env vars overwrite serving.properties; SERVING_MIN_WORKERS only fills", () => {
  const dir = modelDir("option.model_id=m\nmaxWorkers=4\nminWorkers=2\noption.predict_timeout=9\n");
  const r = loadModelConfig({
    modelDir: dir,
    env: {
      SAGEMAKER_NUM_MODEL_WORKERS: "3",
      SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS: "77",
      SERVING_MIN_WORKERS: "1",
    },
  });
  assert.equal(r.config.minWorkers, 3);
  assert.equal(r.config.maxWorkers, 3);
  assert.equal(r.config.predictTimeout, 77);
});

test("shared keys fall back to the server's values; batch_size > 1 turns the rolling batch default off", () => {
  const server = loadServerConfig({ env: { SERVING_BATCH_SIZE: "2", SERVING_MAX_BATCH_DELAY: "30000" } });
  const r = loadModelConfig({ env: { OPTION_MODEL_ID: "m" }, server });
  assert.equal(r.config.batchSize, 2);
  assert.equal(r.config.maxBatchDelay, 30000);
  assert.equal(r.sources.batch_size, "server env SERVING_BATCH_SIZE");
  assert.equal(r.config.rollingBatch, "disable");
});

test("every problem is reported at once, each with its location", () => {
  const dir = modelDir(
    "option.model_id=m\noption.dtype=fp8\nbatch_size=4\noption.rolling_batch=vllm\noption.tensor_parallel_degree=zero\n",
  );
  const problems = problemsOf(() =>
    loadModelConfig({ modelDir: dir, env: { OPTION_MAX_ROLLING_BATCH_SIZE: "-1" } }),
  );
  const file = `${dir}/serving.properties`;
  assert.equal(problems.length, 4, problems.join("\n"));
  assert.ok(
    problems.includes(
      `${file}:2: option.dtype: invalid value "fp8": expected one of fp16, fp32, bf16, int8, auto`,
    ),
  );
  assert.ok(
    problems.some((p) => p.startsWith(`${file}:5: option.tensor_parallel_degree: invalid value "zero"`)),
  );
  assert.ok(
    problems.some((p) =>
      p.startsWith('env OPTION_MAX_ROLLING_BATCH_SIZE: option.max_rolling_batch_size: invalid value "-1"'),
    ),
  );
  assert.ok(
    problems.some((p) =>
      p.startsWith(`${file}:4: option.rolling_batch=vllm cannot be combined with batch_size=4 (${file}:3)`),
    ),
  );
});

test("lmi-dist rules: dtype with quantize, TP without mpi_mode; int8 implies bitsandbytes", () => {
  const both = problemsOf(() =>
    loadModelConfig({
      env: {
        OPTION_MODEL_ID: "m",
        OPTION_ROLLING_BATCH: "lmi-dist",
        OPTION_DTYPE: "fp16",
        OPTION_QUANTIZE: "gptq",
      },
    }),
  );
  assert.match(both[0], /option\.quantize=gptq and option\.dtype=fp16 .* are both set/);
  const tp = problemsOf(() =>
    loadModelConfig({
      env: { OPTION_MODEL_ID: "m", OPTION_ROLLING_BATCH: "lmi-dist", TENSOR_PARALLEL_DEGREE: "2" },
    }),
  );
  assert.match(tp[0], /^env TENSOR_PARALLEL_DEGREE: .*needs option\.mpi_mode=true/);
  const int8 = loadModelConfig({
    env: { OPTION_MODEL_ID: "m", OPTION_ROLLING_BATCH: "lmi-dist", OPTION_DTYPE: "int8" },
  });
  assert.equal(int8.config.quantize, "bitsandbytes");
});

test("neuron and trtllm fail clearly: the runtime does not exist here", () => {
  const [p] = problemsOf(() =>
    loadModelConfig({ env: { OPTION_MODEL_ID: "m", OPTION_ROLLING_BATCH: "TNX" } }),
  );
  assert.match(p, /^env OPTION_ROLLING_BATCH: option\.rolling_batch=neuron needs the AWS Neuron runtime/);
  const [q] = problemsOf(() =>
    loadModelConfig({ env: { OPTION_MODEL_ID: "m", OPTION_ROLLING_BATCH: "trtllm" } }),
  );
  assert.match(q, /TensorRT-LLM runtime, which is not available/);
});

test("unknown option keys warn with a suggestion and still reach Python; deprecated keys are rewritten", () => {
  const dir = modelDir(
    "option.model_id=m\noption.max_rolling_batch_sise=3\noption.load_in_8bit=True\noption.s3url=s3://b/m\n",
  );
  const r = loadModelConfig({ modelDir: dir, env: {} });
  assert.ok(
    r.warnings.some((w) =>
      w.includes("option.max_rolling_batch_sise (did you mean option.max_rolling_batch_size?)"),
    ),
  );
  assert.equal(r.config.pythonProperties.max_rolling_batch_sise, "3");
  assert.equal(r.config.quantize, "bitsandbytes8");
  assert.equal(r.config.modelId, "m", "option.model_id wins over the deprecated option.s3url");
  assert.ok(r.warnings.some((w) => w.includes("option.s3url is deprecated and ignored")));
  assert.ok(Object.isFrozen(r.config) && Object.isFrozen(r.config.pythonProperties));
});

test("un-prefixed option names (rolling_batch=scheduler) are read as option.*", () => {
  const r = loadModelConfig({
    modelDir: modelDir("option.model_id=gpt2\nrolling_batch=scheduler\n"),
    env: {},
  });
  assert.equal(r.config.rollingBatch, "scheduler");
  assert.match(r.sources["option.rolling_batch"], /:2 \(as rolling_batch, without the option\. prefix\)$/);
});

test("djl:// model zoo ids are rejected with the source of model_id", () => {
  const [p] = problemsOf(() =>
    loadModelConfig({ env: { OPTION_MODEL_ID: "djl://ai.djl.zoo/mlp", OPTION_ENGINE: "Python" } }),
  );
  assert.match(
    p,
    /^env OPTION_MODEL_ID: option\.model_id=djl:\/\/ai\.djl\.zoo\/mlp: DJL model zoo URLs are not supported/,
  );
});

test("async mode (LMI ≥0.31) reads as the vLLM paged engine and excludes other rolling batches", () => {
  const dir = modelDir(
    "option.model_id=m\noption.async_mode=true\noption.rolling_batch=disable\noption.entryPoint=djl_python.lmi_vllm.vllm_async_service\n",
  );
  const r = loadModelConfig({ modelDir: dir, env: {} });
  assert.equal(r.config.rollingBatch, "vllm");
  assert.equal(r.config.maxRollingBatchSize, 256);
  assert.match(r.sources["option.rolling_batch"], /:2 \(option\.async_mode=true: the async vLLM service\)$/);
  const [p] = problemsOf(() =>
    loadModelConfig({
      env: { OPTION_MODEL_ID: "m", OPTION_ASYNC_MODE: "true", OPTION_ROLLING_BATCH: "scheduler" },
    }),
  );
  assert.match(
    p,
    /^env OPTION_ROLLING_BATCH: option\.rolling_batch=scheduler cannot be combined with option\.async_mode=true/,
  );
});

test("backend names fill our keys when unset: TRT-LLM limits, tokens_per_block, n_positions", () => {
  const r = loadModelConfig({
    env: {
      OPTION_MODEL_ID: "m",
      OPTION_MAX_INPUT_LEN: "1000",
      OPTION_MAX_OUTPUT_LEN: "24",
      OPTION_TOKENS_PER_BLOCK: "32",
    },
  });
  assert.equal(r.config.maxModelLen, 1024);
  assert.equal(r.config.blockSize, 32);
  assert.equal(r.sources["option.block_size"], "env OPTION_TOKENS_PER_BLOCK (from option.tokens_per_block)");
  const n = loadModelConfig({
    env: { OPTION_MODEL_ID: "m", OPTION_N_POSITIONS: "512", OPTION_MAX_MODEL_LEN: "256" },
  });
  assert.equal(n.config.maxModelLen, 256, "an explicit max_model_len wins over n_positions");
  const [bad] = problemsOf(() =>
    loadModelConfig({ env: { OPTION_MODEL_ID: "m", OPTION_TOKENS_PER_BLOCK: "24" } }),
  );
  assert.match(
    bad,
    /^env OPTION_TOKENS_PER_BLOCK \(from option\.tokens_per_block\): option\.block_size: invalid value "24"/,
  );
});

test("vLLM's own names fill LMI's keys; both set to different values is a problem", () => {
  const r = loadModelConfig({
    env: { OPTION_MODEL_ID: "m", OPTION_MAX_NUM_SEQS: "12", OPTION_TENSOR_PARALLEL_SIZE: "2" },
  });
  assert.equal(r.config.maxRollingBatchSize, 12);
  assert.equal(r.config.tensorParallelDegree, 2);
  const same = loadModelConfig({
    env: { OPTION_MODEL_ID: "m", OPTION_MAX_NUM_SEQS: "12", OPTION_MAX_ROLLING_BATCH_SIZE: "12" },
  });
  assert.equal(same.config.maxRollingBatchSize, 12);
  const [p] = problemsOf(() =>
    loadModelConfig({
      env: { OPTION_MODEL_ID: "m", OPTION_MAX_NUM_SEQS: "12", OPTION_MAX_ROLLING_BATCH_SIZE: "16" },
    }),
  );
  assert.equal(
    p,
    "env OPTION_MAX_NUM_SEQS: option.max_num_seqs=12 conflicts with option.max_rolling_batch_size=16 " +
      "(env OPTION_MAX_ROLLING_BATCH_SIZE); they name the same setting, set only one",
  );
});

test("enable_chunked_prefill defaults to lmi-dist's prefill-first order there, to mixing elsewhere, and reaches the engine", async () => {
  const { engineOptionsOf } = await import("../../src/registry/engine-backend.ts");
  const of = (props: string) =>
    loadModelConfig({ modelDir: modelDir(`option.model_id=m\n${props}`), env: {} }).config;
  assert.equal(of("option.rolling_batch=lmi-dist\n").enableChunkedPrefill, false);
  assert.equal(of("option.rolling_batch=vllm\n").enableChunkedPrefill, true);
  assert.equal(of("").enableChunkedPrefill, true);
  const mixed = of("option.rolling_batch=lmi-dist\noption.enable_chunked_prefill=true\n");
  assert.equal(engineOptionsOf(mixed).enableChunkedPrefill, true);
  assert.equal(
    loadModelConfig({ env: { OPTION_MODEL_ID: "m", OPTION_ENABLE_CHUNKED_PREFILL: "false" } }).config
      .enableChunkedPrefill,
    false,
  );
  const [p] = problemsOf(() => of("option.enable_chunked_prefill=sometimes\n"));
  assert.match(p, /option\.enable_chunked_prefill: invalid value "sometimes"/);
});
