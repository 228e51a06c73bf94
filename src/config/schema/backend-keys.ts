// Backend-specific `option.*` keys of spec §1.6: DeepSpeed, HF Accelerate/scheduler, lmi-dist,
// Transformers-NeuronX and TensorRT-LLM. Part of the one schema table (schema/index.ts).
// Invariant: a key that only steered a replaced engine's internals is accepted and says so in `here`;
// a key with an equivalent in our engine fills that key (`fallbackFor`) when the user did not set it.
import { bool, float, int, oneOf, text } from "../value-kinds.ts";
import { def } from "./types.ts";

const DS = ["deepspeed"] as const;
const TNX = ["neuron"] as const;
const TRT = ["trtllm"] as const;
const noEffect = (what: string) => () => `has no effect here: ${what}`;

export const BACKEND_KEYS = [
  // DeepSpeed (ds_properties.py)
  def("option.max_tokens", "maxTokens", int({ min: 1 }), {
    backends: DS,
    default: (ctx) => (ctx.value("option.entryPoint") === "djl_python.deepspeed" ? 1024 : undefined),
    defaultText: "1024 with the DeepSpeed entry point, else unset",
    fallbackFor: "option.max_model_len",
    description: "DeepSpeed: most tokens (prompt + generated) per request.",
    here: "caps the sequence length: fills max_model_len when that is unset",
  }),
  def("option.low_cpu_mem_usage", "lowCpuMemUsage", bool(), {
    backends: ["deepspeed", "huggingface", "neuron"],
    default: (ctx) => ctx.value("option.entryPoint") === "djl_python.deepspeed",
    defaultText: "true with the DeepSpeed entry point, else false",
    description: "Load weights without a full extra copy in host memory.",
    here: "handler path: passed to from_pretrained; the engine always loads shard by shard",
  }),
  def("option.enable_cuda_graph", "enableCudaGraph", bool(), {
    backends: DS,
    default: false,
    description: "DeepSpeed: capture CUDA graphs.",
    here: "when set, enforce_eager defaults to its opposite (CUDA graphs for decode on the GPU executor)",
  }),
  def("option.triangular_masking", "triangularMasking", bool(), {
    backends: DS,
    default: true,
    description: "DeepSpeed kernel: use triangular (causal) attention masking.",
    here: "decoder attention is always causal here; false is accepted and ignored with a warning",
    warnWhen: (v) => (v ? undefined : "has no effect here: attention of decoder models is always causal"),
  }),
  def("option.return_tuple", "returnTuple", bool(), {
    backends: DS,
    default: true,
    description: "DeepSpeed kernel: return model outputs as tuples.",
    here: "an internal DeepSpeed output format; nothing to steer in our executors, accepted as is",
  }),
  def("option.training_mp_size", "trainingMpSize", int({ min: 1 }), {
    backends: DS,
    default: 1,
    description: "DeepSpeed: tensor-parallel degree the checkpoint was saved with.",
    here:
      "GPU executor: the degree option.checkpoint was saved at; when set it must equal the checkpoint's tp_size " +
      "(unset: taken from it). The checkpoint is re-sharded at load to tensor_parallel_degree; no effect without option.checkpoint",
  }),
  def("option.checkpoint", "checkpoint", text({ patternText: "a path relative to the model directory" }), {
    backends: DS,
    description: "DeepSpeed: checkpoint JSON or directory, relative to the model path; requires dtype.",
    here:
      "GPU executor: a tensor-parallel checkpoint JSON written by `python3 -m lmi_executor.shard_checkpoint` (or its folder), " +
      "relative to the model directory unless absolute; its weights replace the directory's, config.json and tokenizer stay there",
  }),
  def("option.smoothquant_alpha", "smoothquantAlpha", float({ min: 0, max: 1 }), {
    backends: DS,
    description: "DeepSpeed SmoothQuant migration strength (quantize=smoothquant).",
    here: "passed to the executor with quantize=smoothquant",
  }),
  def("option.save_mp_checkpoint_path", "saveMpCheckpointPath", text(), {
    backends: DS,
    description: "DeepSpeed: write the sharded checkpoint here after loading.",
    here: "not done here (no DeepSpeed sharded format); accepted and ignored with a warning",
    warnWhen: noEffect("there is no DeepSpeed sharded checkpoint format to save"),
  }),
  def("option.deepspeed_config_path", "deepspeedConfigPath", text(), {
    backends: DS,
    description: "DeepSpeed: a ds_config JSON that replaces the generated one.",
    here: "no DeepSpeed runtime here; accepted and ignored with a warning",
    warnWhen: noEffect("there is no DeepSpeed runtime to configure"),
  }),
  // HF Accelerate and the scheduler (hf_properties.py, scheduler_rb_properties.py)
  def("option.disable_flash_attn", "disableFlashAttn", bool(), {
    backends: ["huggingface", "scheduler"],
    default: true,
    description: "Do not use flash-attention-2 in transformers.",
    here: "handler path: passed to transformers; the engine picks its attention kernel itself",
  }),
  def("option.decoding_strategy", "decodingStrategy", oneOf(["greedy", "sample", "contrastive"]), {
    backends: ["scheduler"],
    default: "greedy",
    description: "Scheduler: default search when a request does not ask (do_sample:true forces sample).",
    here: "same: the default sampling strategy of requests; contrastive requests wait in the queue while the GPU executor's hidden-state pool (sized with the KV cache) is full",
  }),
  def("option.max_sparsity", "maxSparsity", float({ min: 0, max: 1 }), {
    backends: ["scheduler"],
    default: 0.33,
    description: "Scheduler: padding fraction above which a batch is split into sub-batches.",
    here: "same (rolling_batch=scheduler)",
  }),
  def("option.max_splits", "maxSplits", int({ min: 1 }), {
    backends: ["scheduler"],
    default: 3,
    description: "Scheduler: most sub-batches one batch is split into.",
    here: "same (rolling_batch=scheduler)",
  }),
  // lmi-dist
  def("option.paged_attention", "pagedAttention", bool(), {
    backends: ["lmi-dist"],
    default: true,
    description: "lmi-dist: paged attention KV cache.",
    here: "false runs the padded sub-batch engine (as rolling_batch=scheduler: contiguous KV per sub-batch)",
  }),
  // vLLM EngineArgs names that LMI ≥0.28 passes through; they duplicate LMI's own keys
  def("option.max_num_seqs", "maxNumSeqs", int({ min: 1 }), {
    backends: ["vllm"],
    fallbackFor: "option.max_rolling_batch_size",
    strictAlias: true,
    description:
      "vLLM: most sequences per step (LMI's max_rolling_batch_size; both set differently is an error).",
    here: "fills max_rolling_batch_size when that is unset",
  }),
  def("option.max_num_batched_tokens", "maxNumBatchedTokens", int({ min: 1 }), {
    backends: ["vllm"],
    fallbackFor: "option.max_rolling_batch_prefill_tokens",
    strictAlias: true,
    description: "vLLM: token budget of one step (LMI's max_rolling_batch_prefill_tokens).",
    here: "fills max_rolling_batch_prefill_tokens when that is unset",
  }),
  def("option.tensor_parallel_size", "tensorParallelSize", int({ min: 1 }), {
    backends: ["vllm"],
    fallbackFor: "option.tensor_parallel_degree",
    strictAlias: true,
    description:
      "vLLM: tensor-parallel GPUs (LMI's tensor_parallel_degree; both set differently is an error).",
    here: "fills tensor_parallel_degree when that is unset",
  }),
  // Transformers-NeuronX (tnx_properties.py)
  def("option.n_positions", "nPositions", int({ min: 1 }), {
    backends: TNX,
    description: "Neuron: compiled sequence length (prompt + generated).",
    fallbackFor: "option.max_model_len",
    here: "caps the sequence length: fills max_model_len when that is unset",
  }),
  def("option.unroll", "unroll", int({ min: 1 }), {
    backends: TNX,
    description: "Neuron compiler: layers to unroll.",
    here: "no Neuron compiler here; accepted and ignored with a warning",
    warnWhen: noEffect("it only steers the Neuron compiler"),
  }),
  def("option.neuron_optimize_level", "neuronOptimizeLevel", int({ min: 1, max: 3 }), {
    backends: TNX,
    description: "Neuron compiler optimization level (-O1..-O3).",
    here: "no Neuron compiler here; accepted and ignored with a warning",
    warnWhen: noEffect("it only steers the Neuron compiler"),
  }),
  def("option.compiled_graph_path", "compiledGraphPath", text(), {
    backends: TNX,
    description: "Neuron: directory or s3:// of precompiled graphs.",
    here: "no Neuron runtime here; accepted and ignored with a warning",
    warnWhen: noEffect("there is no Neuron runtime"),
  }),
  // TensorRT-LLM
  def("option.max_input_len", "maxInputLen", int({ min: 1 }), {
    backends: TRT,
    description: "TRT-LLM: longest prompt the engine is built for.",
    here: "with max_output_len, sets max_model_len (their sum) when that is unset",
  }),
  def("option.max_output_len", "maxOutputLen", int({ min: 1 }), {
    backends: TRT,
    description: "TRT-LLM: most generated tokens the engine is built for.",
    here: "with max_input_len, sets max_model_len (their sum) when that is unset",
  }),
  def("option.tokens_per_block", "tokensPerBlock", int({ min: 1 }), {
    backends: TRT,
    fallbackFor: "option.block_size",
    description: "TRT-LLM: tokens per KV-cache block.",
    here: "fills block_size when that is unset",
  }),
  def(
    "option.kv_cache_free_gpu_mem_fraction",
    "kvCacheFreeGpuMemFraction",
    float({ min: 0, max: 1, minExclusive: true }),
    {
      backends: TRT,
      fallbackFor: "option.gpu_memory_utilization",
      description: "TRT-LLM: fraction of free GPU memory for the KV cache.",
      here: "fills gpu_memory_utilization when that is unset",
    },
  ),
  def("option.max_num_tokens", "maxNumTokens", int({ min: 1 }), {
    backends: TRT,
    fallbackFor: "option.max_rolling_batch_prefill_tokens",
    description: "TRT-LLM: token budget of one engine step.",
    here: "fills max_rolling_batch_prefill_tokens when that is unset",
  }),
  def("option.max_num_sequences", "maxNumSequences", int({ min: 1 }), {
    backends: TRT,
    fallbackFor: "option.max_rolling_batch_size",
    description: "TRT-LLM: most sequences in flight.",
    here: "fills max_rolling_batch_size when that is unset",
  }),
  def("option.enable_kv_cache_reuse", "enableKvCacheReuse", bool(), {
    backends: TRT,
    fallbackFor: "option.enable_prefix_caching",
    description: "TRT-LLM: reuse KV blocks across requests with a shared prefix.",
    here: "fills enable_prefix_caching when that is unset",
  }),
  def(
    "option.batch_scheduler_policy",
    "batchSchedulerPolicy",
    oneOf(["max_utilization", "guaranteed_no_evict"]),
    {
      backends: TRT,
      description: "TRT-LLM: admit greedily (max_utilization) or only what cannot be evicted.",
      here: "the engine admits greedily and preempts by recomputation, as max_utilization",
    },
  ),
  def("option.use_custom_all_reduce", "useCustomAllReduce", bool(), {
    backends: TRT,
    description: "TRT-LLM: custom all-reduce kernel for tensor parallelism.",
    here: "no TensorRT-LLM runtime here; accepted and ignored with a warning",
    warnWhen: noEffect("it only steers TensorRT-LLM kernels"),
  }),
  def("option.enable_trt_overlap", "enableTrtOverlap", bool(), {
    backends: TRT,
    description: "TRT-LLM: overlap micro-batches.",
    here: "no TensorRT-LLM runtime here; accepted and ignored with a warning",
    warnWhen: noEffect("it only steers TensorRT-LLM scheduling"),
  }),
] as const;
