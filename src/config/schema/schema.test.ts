// Invariants of the schema table: documented entries, unique camelCase fields, defaults their own kind
// accepts, replacements that exist, every key the brief and spec require; plus did-you-mean.
import assert from "node:assert/strict";
import { test } from "node:test";
import { didYouMean, editDistance } from "../did-you-mean.ts";
import { isDeprecated, type KeyDef, SCHEMA, schemaEntry } from "./index.ts";

const typed = SCHEMA.filter((e): e is KeyDef => !isDeprecated(e));

test("every entry documents itself: description, here note, readers", () => {
  for (const e of SCHEMA) {
    assert.ok(e.description.length > 10, `${e.key}: description`);
    assert.ok(e.here.length > 3, `${e.key}: here note`);
    assert.ok(Array.isArray(e.backends), `${e.key}: backends`);
  }
});

test("fields are unique camelCase names; option keys map to their name", () => {
  const fields = new Set<string>();
  for (const e of typed) {
    assert.match(e.field, /^[a-z][A-Za-z0-9]*$/, e.key);
    assert.ok(!fields.has(e.field), `duplicate field ${e.field}`);
    fields.add(e.field);
  }
});

test("static defaults are values their own kind accepts (format then parse gives them back)", () => {
  for (const e of typed) {
    if (e.default === undefined || typeof e.default === "function") continue;
    const parsed = e.kind.parse(e.kind.format(e.default));
    assert.ok(
      "value" in parsed,
      `${e.key}: default ${String(e.default)} rejected: ${JSON.stringify(parsed)}`,
    );
    assert.deepEqual(parsed.value, e.default, e.key);
  }
});

test("deprecated keys and fallbacks point at existing typed keys", () => {
  for (const e of SCHEMA) {
    const target = isDeprecated(e) ? e.replacement : e.fallbackFor;
    if (target === undefined) continue;
    const t = schemaEntry(target);
    assert.ok(t && !isDeprecated(t), `${e.key} -> ${target}`);
  }
});

test("the keys the brief and spec require are all in the table", () => {
  const required =
    `engine option.model_dir option.model_id option.enable_streaming option.dtype option.task option.max_tokens
    option.low_cpu_mem_usage option.enable_cuda_graph option.triangular_masking option.return_tuple option.training_mp_size
    option.checkpoint option.parallel_loading load_on_devices option.trust_remote_code option.load_in_4bit option.load_in_8bit
    option.revision option.rolling_batch option.quantize option.paged_attention option.max_rolling_batch_prefill_tokens
    option.decoding_strategy option.max_sparsity option.max_splits option.max_rolling_batch_size option.n_positions option.unroll
    option.tensor_parallel_degree option.mpi_mode option.entryPoint option.gpu_memory_utilization option.enforce_eager
    option.enable_prefix_caching option.max_model_len option.block_size option.load_format option.output_formatter
    option.tgi_compat option.model_loading_timeout option.predict_timeout option.handler option.pythonExecutable option.env
    option.device_map batch_size max_batch_delay max_idle_time minWorkers maxWorkers job_queue_size option.waiting_steps
    option.s3url option.data_type inference_address management_address model_store load_models max_request_size
    chunked_read_timeout request_id_header_key prometheus`.split(/\s+/);
  assert.deepEqual(
    required.filter((k) => !schemaEntry(k)),
    [],
  );
});

test("did-you-mean suggests close keys only", () => {
  assert.equal(editDistance("kitten", "sitting"), 3);
  const keys = ["option.max_rolling_batch_size", "option.dtype"];
  assert.equal(didYouMean("option.max_rolling_batch_sise", keys), "option.max_rolling_batch_size");
  assert.equal(didYouMean("OPTION.DTYPE", keys), "option.dtype");
  assert.equal(didYouMean("option.something_else", keys), undefined);
});
