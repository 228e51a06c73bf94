// Per-model keys every backend shares: `engine`, workers, and the common `option.*` keys of spec §1.4–§1.5,
// plus the keys our paged engine reads (gpu_memory_utilization, block_size, ...). Part of the one schema
// table (schema/index.ts). Invariant: computed defaults only look at keys of this scope via DefaultContext.
import { bool, boolOr, envMap, float, int, intOneOf, intOrMax, oneOf, text } from "../value-kinds.ts";
import { def } from "./types.ts";

const ALL = ["all"] as const;
const RB = ["scheduler", "lmi-dist", "vllm", "deepspeed", "neuron", "trtllm"] as const;

export const ROLLING_BATCH_VALUES = [
  "auto",
  "scheduler",
  "lmi-dist",
  "vllm",
  "deepspeed",
  "neuron",
  "trtllm",
  "disable",
] as const;

export const OUTPUT_FORMATTERS = [
  "json",
  "jsonlines",
  "sse",
  "json_chat",
  "jsonlines_chat",
  "sse_chat",
  "3p",
  "3p_stream",
  "none",
] as const;

export const MODEL_KEYS = [
  def("engine", "engine", oneOf(["Python", "DeepSpeed", "FasterTransformer", "MPI"]), {
    backends: ["server"],
    default: "Python",
    defaultText: "inferred from the model directory (spec §1.1): Python for LLM checkpoints",
    description:
      "Engine: Python, or the aliases MPI, DeepSpeed, FasterTransformer (Python + mpi_mode + entry point).",
    here: "aliases are resolved first; every model runs on the Python-compatible path (paged engine or handler)",
  }),
  def("minWorkers", "minWorkers", int({ min: 0 }), {
    backends: ["server"],
    default: 1,
    deviceScoped: true,
    description: "Workers started at load (gpu./cpu. prefixed spellings win for that device type).",
    here: "handler path: Python workers kept running; paged engine: 0 leaves the model unloaded until scaled",
  }),
  def("maxWorkers", "maxWorkers", int({ min: 0 }), {
    backends: ["server"],
    default: 1,
    deviceScoped: true,
    description: "Most workers the model may scale to (GPU Python default 1).",
    here: "handler path: Python worker count ceiling; the paged engine always runs one replica",
  }),
  def("option.model_id", "modelId", text({ patternText: "an HF hub id, s3:// URL or local path" }), {
    backends: ALL,
    description: "Model to load: Hugging Face hub id, s3:// prefix or local path.",
    here: "same; resolved to a local directory before loading (see src/model/)",
  }),
  def("option.model_dir", "modelDir", text({ patternText: "a directory path" }), {
    backends: ALL,
    defaultText: "the model directory (the one holding serving.properties)",
    description: "The model directory; weights are read from here when model_id is unset.",
    here: "same",
  }),
  def("option.entryPoint", "entryPoint", text({ patternText: "a module name, .py path or http(s) URL" }), {
    backends: ALL,
    defaultText:
      "DJL_ENTRY_POINT, else model.py in the model dir, else the engine alias's, else djl_python.huggingface",
    description:
      "Python handler module: djl_python.huggingface, djl_python.deepspeed, model.py, a path or a URL.",
    here: "built-in djl_python.* names run our engine; a model.py or other module runs in the Python handler",
  }),
  def(
    "option.handler",
    "handler",
    text({ pattern: /^[A-Za-z_][A-Za-z0-9_]*$/, patternText: "a Python function name" }),
    {
      backends: ALL,
      default: "handle",
      description: "Function of the entry point module that handles requests.",
      here: "same (handler path)",
    },
  ),
  def(
    "option.task",
    "task",
    text({ pattern: /^[a-z0-9][a-z0-9-]*$/, patternText: "an HF pipeline task like text-generation" }),
    {
      backends: ["huggingface", "deepspeed", "lmi-dist", "vllm"],
      defaultText: "inferred from the architecture (…ForCausalLM → text-generation)",
      description: "Hugging Face pipeline task.",
      here: "text-generation and text2text-generation use the engine; other tasks run the handler path",
    },
  ),
  def(
    "option.dtype",
    "dtype",
    oneOf(["fp16", "fp32", "bf16", "int8", "auto"], {
      synonyms: { float16: "fp16", half: "fp16", float32: "fp32", float: "fp32", bfloat16: "bf16" },
    }),
    {
      backends: ALL,
      default: "auto",
      defaultText: "auto: the checkpoint's torch_dtype on GPU, fp32 on CPU",
      description: "Weight and activation data type.",
      here: "the executor's compute dtype; int8 means bitsandbytes 8-bit weights",
    },
  ),
  def("option.tensor_parallel_degree", "tensorParallelDegree", intOrMax(), {
    backends: ALL,
    default: 1,
    defaultText: "$TENSOR_PARALLEL_DEGREE (or SM_NUM_GPUS), else 1",
    description: "GPUs one model replica is sharded over; max means all visible GPUs.",
    here: "same: one executor rank per GPU, NCCL between them",
  }),
  def("option.pipeline_parallel_degree", "pipelineParallelDegree", int({ min: 1, max: 1 }), {
    backends: ["vllm", "trtllm"],
    default: 1,
    description: "Pipeline-parallel stages.",
    here: "pipeline parallelism is not implemented; only 1 is accepted",
  }),
  def("option.mpi_mode", "mpiMode", bool(), {
    backends: ALL,
    default: false,
    description: "Launch the model's ranks with mpirun (forced by engine=MPI/DeepSpeed).",
    here: "the GPU executor's ranks start under mpirun instead of as plain child processes",
  }),
  def("option.rolling_batch", "rollingBatch", oneOf(ROLLING_BATCH_VALUES, { synonyms: { tnx: "neuron" } }), {
    backends: ALL,
    // Static-batch streaming (enable_streaming) predates rolling batch, whose classic default was disable.
    default: (ctx) =>
      (ctx.value("batch_size") as number) > 1 ||
      (ctx.isSet("option.enable_streaming") && ctx.value("option.enable_streaming") !== false)
        ? "disable"
        : "auto",
    defaultText: "auto, or disable when batch_size > 1 or enable_streaming is on",
    description:
      "Continuous-batching backend: auto, scheduler, lmi-dist, vllm, deepspeed, neuron, trtllm, disable.",
    here: "auto/lmi-dist/vllm/deepspeed: paged engine; scheduler: padded sub-batches; disable: handler path",
  }),
  def("option.max_rolling_batch_size", "maxRollingBatchSize", int({ min: 1 }), {
    backends: RB,
    default: (ctx) => (["vllm", "lmi-dist"].includes(ctx.value("option.rolling_batch") as string) ? 256 : 32),
    defaultText: "256 for vllm and lmi-dist, else 32",
    description: "Most requests in the running batch at once.",
    here: "same: the scheduler's max running requests (vLLM max_num_seqs)",
  }),
  def("option.max_rolling_batch_prefill_tokens", "maxRollingBatchPrefillTokens", int({ min: 1 }), {
    backends: ["lmi-dist", "vllm"],
    default: (ctx) => (ctx.value("option.rolling_batch") === "lmi-dist" ? 4096 : undefined),
    defaultText: "4096 for lmi-dist, else unset (the engine uses max_model_len)",
    description: "Token budget of one prefill step (vLLM max_num_batched_tokens).",
    here: "same: the per-step token budget; long prompts are prefilled in chunks",
  }),
  def("option.enable_streaming", "enableStreaming", boolOr(["huggingface"]), {
    backends: ["huggingface", "deepspeed"],
    default: false,
    description:
      "Static-batch streaming: true (DJL token loop) or huggingface (TextStreamer); deprecated in 0.25.",
    here: 'handler path streams {"outputs": [...]} lines; rolling batch streams per request anyway',
  }),
  def(
    "option.output_formatter",
    "outputFormatter",
    oneOf(OUTPUT_FORMATTERS, {
      openPattern: /^[A-Za-z_][A-Za-z0-9_]*$/,
      openText: "the name of a formatter function in model.py",
    }),
    {
      backends: ALL,
      defaultText: "json, or jsonlines when streaming (sse with tgi_compat)",
      description:
        "Response format: json, jsonlines, sse, *_chat, 3p, 3p_stream, none, or a model.py function.",
      here: "same",
    },
  ),
  def("option.tgi_compat", "tgiCompat", bool(), {
    backends: ALL,
    default: false,
    description: "Answer in Hugging Face TGI's shapes (array-wrapped, sse, logprob/special names).",
    here: "same",
  }),
  def("option.trust_remote_code", "trustRemoteCode", bool(), {
    backends: ALL,
    default: false,
    description: "Allow model code from the hub repository (env HF_MODEL_TRUST_REMOTE_CODE).",
    here: "handler path: passed to transformers; the engine runs no hub code, so it only permits custom configs",
  }),
  def("option.revision", "revision", text(), {
    backends: ALL,
    description: "Hub commit, branch or tag of model_id (env HF_REVISION).",
    here: "same: the revision downloaded",
  }),
  def("option.parallel_loading", "parallelLoading", bool(), {
    backends: ALL,
    default: false,
    description: "Start the model's workers concurrently.",
    here: "handler path: Python workers start together; the engine loads its ranks concurrently always",
  }),
  def("option.model_loading_timeout", "modelLoadingTimeout", int({ min: 1 }), {
    backends: ALL,
    default: 1200,
    defaultText: "$MODEL_LOADING_TIMEOUT, else 1200 (the LMI image's value)",
    description: "Seconds a model may take to load (SAGEMAKER_STARTUP_TIMEOUT overwrites).",
    here: "same: loading longer fails the model",
  }),
  def("option.predict_timeout", "predictTimeout", int({ min: 1 }), {
    backends: ALL,
    default: 240,
    defaultText: "$PREDICT_TIMEOUT, else 240 (the LMI image's value)",
    description:
      "Seconds one prediction (or rolling-batch admission) may wait (SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS).",
    here: "same",
  }),
  def("option.pythonExecutable", "pythonExecutable", text(), {
    backends: ALL,
    default: "python3",
    defaultText: "$PYTHON_EXECUTABLE, else python3",
    description: "Python interpreter for handler workers.",
    here: "same, also for the GPU executor ranks",
  }),
  def("option.env", "env", envMap(), {
    backends: ALL,
    description: "Extra environment for the Python processes: NAME=value,NAME2=value2.",
    here: "same",
  }),
  def("option.waiting_steps", "waitingSteps", int({ min: 0 }), {
    backends: ["scheduler", "lmi-dist"],
    description: "Decode steps new requests wait before being admitted to the running batch.",
    here: "same: the scheduler admits waiting requests at most every N+1 steps while others run",
  }),
  def("option.device_map", "deviceMap", text(), {
    backends: ["huggingface"],
    defaultText: "auto when tensor_parallel_degree > 0 and CUDA is present",
    description: "transformers device_map (auto, balanced, sequential, ...).",
    here: "handler path: passed to transformers; the engine places weights by tensor_parallel_degree",
  }),
  def(
    "option.quantize",
    "quantize",
    oneOf(["bitsandbytes", "bitsandbytes4", "bitsandbytes8", "gptq", "awq", "dynamic_int8", "smoothquant"]),
    {
      backends: ["huggingface", "deepspeed", "lmi-dist", "vllm"],
      description: "Quantization method of the weights (env HF_MODEL_QUANTIZE).",
      here:
        "GPU executor: bitsandbytes/bitsandbytes8/dynamic_int8 quantize to weight-only int8 at load, bitsandbytes4 to " +
        "int4 (groups of 128); gptq/awq (pre-quantized checkpoints) and smoothquant fail at load naming the method",
    },
  ),
  def("option.max_model_len", "maxModelLen", int({ min: 1 }), {
    backends: ["vllm"],
    // TRT-LLM's engine limits, when both are given, bound the sequence the same way.
    default: (ctx) =>
      ctx.isSet("option.max_input_len") && ctx.isSet("option.max_output_len")
        ? (ctx.value("option.max_input_len") as number) + (ctx.value("option.max_output_len") as number)
        : undefined,
    defaultText: "max_input_len + max_output_len when both are set, else the model's max_position_embeddings",
    description: "Longest sequence (prompt + generated tokens).",
    here: "same: longer prompts are rejected with 424",
  }),
  def("option.load_format", "loadFormat", oneOf(["auto", "safetensors", "pt", "dummy"]), {
    backends: ["vllm"],
    default: "auto",
    description: "Weight file format to load; dummy makes random weights.",
    here: "same",
  }),
  def(
    "option.gpu_memory_utilization",
    "gpuMemoryUtilization",
    float({ min: 0, max: 1, minExclusive: true }),
    {
      backends: ["vllm"],
      default: 0.9,
      description:
        "Fraction of GPU memory the engine may use (weights + KV cache); env CUDA_MEMORY_FRACTION.",
      here: "same: sizes the KV cache on the GPU executor",
    },
  ),
  def("option.kv_cache_dtype", "kvCacheDtype", oneOf(["auto", "fp8", "fp8_e4m3", "bf16", "fp16", "fp32"]), {
    backends: ["vllm"],
    default: "auto",
    description:
      "Element type of the paged KV cache; auto follows the model's dtype. fp8 (e4m3) halves the bytes per cached token.",
    here: "GPU executor: auto keeps the model's dtype; fp8 / fp8_e4m3 store K and V rounded to fp8 e4m3 without scales (twice the cached tokens, half the attention reads; needs compute capability 8.9+, e.g. H100); the CPU executor refuses fp8",
  }),
  def("option.enforce_eager", "enforceEager", bool(), {
    backends: ["vllm"],
    default: (ctx) =>
      ctx.isSet("option.enable_cuda_graph") ? !ctx.value("option.enable_cuda_graph") : false,
    defaultText: "false, or the opposite of enable_cuda_graph when that is set (env ENABLE_CUDA_GRAPHS)",
    description: "Disable CUDA graphs.",
    here: "same: true runs decode eagerly on the GPU executor",
  }),
  def("option.enable_prefix_caching", "enablePrefixCaching", bool(), {
    backends: ["vllm"],
    default: true,
    description: "Reuse KV blocks of shared prompt prefixes.",
    here: "same; requests with prompt logprobs or contrastive search compute their whole prompt (they need every position's logits or hidden state)",
  }),
  def("option.enable_chunked_prefill", "enableChunkedPrefill", bool(), {
    backends: ["vllm", "lmi-dist"],
    // lmi-dist's iterations prefill new requests alone (spec §4.4); vLLM v1 always mixes.
    default: (ctx) => ctx.value("option.rolling_batch") !== "lmi-dist",
    defaultText:
      "false with rolling_batch=lmi-dist (its order: new requests prefill in a step of their own), else true",
    description:
      "Split prompts over steps and batch them with running requests' decode tokens (vLLM); false runs prompts first, in steps of their own.",
    here:
      "paged batching: true mixes decode rows into steps with prompt chunks (steady inter-token latency); false gives " +
      "steps with prompt work to prompts alone, lmi-dist's order (better time to first token and throughput for " +
      "bursts, decodes pause while prompts run); prompts longer than max_rolling_batch_prefill_tokens are split either " +
      "way. rolling_batch=scheduler (padded) ignores it: admitted requests prefill as sub-batches of their own",
  }),
  def("option.block_size", "blockSize", intOneOf([8, 16, 32, 64, 128]), {
    backends: ["vllm"],
    default: 16,
    description: "Tokens per KV-cache block.",
    here: "same",
  }),
  def("option.async_mode", "asyncMode", bool(), {
    backends: ["vllm", "trtllm"],
    default: false,
    description:
      "LMI ≥0.31: serve through the async vLLM service instead of a rolling batch (exclusive with it).",
    here: "true runs the paged engine (as rolling_batch=vllm); the engine is asynchronous in any case",
  }),
  def("option.kv_cache_bytes", "kvCacheBytes", int({ min: 1 }), {
    backends: [],
    description: "This server only: KV-cache budget in bytes for the CPU executor.",
    here: "sizes the CPU executor's KV cache (the GPU executor uses gpu_memory_utilization)",
  }),
  def("option.engine_thread", "engineThread", boolOr(["auto"]), {
    backends: [],
    default: "auto",
    description:
      "This server only: run the engine (step loop, scheduler, executor I/O, detokenization) on a thread of its own, so HTTP formatting and socket writes overlap the model's next step. auto: on with the GPU executor, off with the CPU one.",
    here: "true / false / auto (on with --executor gpu). Pays where the model steps faster than one thread serves every stream's delta (small models: docs/gpu-executor.md)",
  }),
] as const;
