// How environment variables become configuration entries (spec §1.2, §1.3): the TGI/SageMaker names the LMI
// container entrypoint copies onto LMI names, the OPTION_* naming rule, and SERVING_<KEY> for server keys.
// Invariants: the input env is never modified; a translated variable only fills an LMI name that is unset;
// every produced entry remembers the variable it came from (and the TGI name behind it), for `sources`.

/** TGI/SageMaker name -> LMI name, applied only when the LMI name is unset (dockerd-entrypoint.sh). */
const TGI_NAMES: ReadonlyArray<readonly [string, string]> = [
  ["HF_MODEL_QUANTIZE", "OPTION_QUANTIZE"],
  ["HF_MODEL_TRUST_REMOTE_CODE", "OPTION_TRUST_REMOTE_CODE"],
  ["SM_NUM_GPUS", "TENSOR_PARALLEL_DEGREE"],
  ["MAX_CONCURRENT_REQUESTS", "SERVING_JOB_QUEUE_SIZE"],
  ["MAX_BATCH_PREFILL_TOKENS", "OPTION_MAX_ROLLING_BATCH_PREFILL_TOKENS"],
  ["MAX_BATCH_SIZE", "OPTION_MAX_ROLLING_BATCH_SIZE"],
  ["ENABLE_CUDA_GRAPHS", "OPTION_ENFORCE_EAGER"],
  ["CUDA_MEMORY_FRACTION", "OPTION_GPU_MEMORY_UTILIZATION"],
];

/** An environment after the TGI translation, plus where each translated variable came from. */
export interface EffectiveEnv {
  readonly vars: Readonly<Record<string, string>>;
  /** LMI name -> TGI name it was copied from. */
  readonly translatedFrom: ReadonlyMap<string, string>;
}

function invertBool(value: string): string {
  const v = value.trim().toLowerCase();
  if (v === "true") return "false";
  if (v === "false") return "true";
  return value; // left as is, so validation reports the bad value against its source
}

export function translateTgiEnv(env: NodeJS.ProcessEnv): EffectiveEnv {
  const vars: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) vars[k] = v;
  const translatedFrom = new Map<string, string>();
  for (const [tgi, lmi] of TGI_NAMES) {
    const value = vars[tgi];
    if (value === undefined || vars[lmi] !== undefined) continue;
    vars[lmi] = tgi === "ENABLE_CUDA_GRAPHS" ? invertBool(value) : value;
    translatedFrom.set(lmi, tgi);
  }
  return { vars, translatedFrom };
}

/** "env OPTION_QUANTIZE (from HF_MODEL_QUANTIZE)" */
export function envSource(env: EffectiveEnv, name: string): string {
  const from = env.translatedFrom.get(name);
  return from ? `env ${name} (from ${from})` : `env ${name}`;
}

/**
 * The model property an OPTION_* variable names: OPTION_<NAME> -> option.<name>, lowercased only when NAME
 * is all upper case (so OPTION_output_formatter keeps its case); OPTION_ENTRYPOINT -> option.entryPoint;
 * OPTION_ENGINE -> engine. Undefined for variables that are not OPTION_*.
 */
export function optionKeyOfEnv(name: string): string | undefined {
  const m = /^OPTION_(.+)$/.exec(name);
  if (!m) return undefined;
  const rest = m[1];
  if (rest === "ENTRYPOINT") return "option.entryPoint";
  if (rest === "ENGINE") return "engine";
  return `option.${/^[A-Z_0-9]+$/.test(rest) ? rest.toLowerCase() : rest}`;
}

/** SERVING_<KEY> -> key (lowercased), for server keys only. */
export function servingEnvName(key: string): string {
  return `SERVING_${key.toUpperCase()}`;
}
