// OpenAI request bodies (chat completions and completions, spec §3.7) parsed into typed plans whose
// sampling fields are mapped onto LMI parameter names (max_tokens -> max_new_tokens, stop ->
// stop_sequences, logprobs/top_logprobs -> details/top_n_tokens). The engine's validator checks
// the mapped values; the ranges OpenAI defines itself are checked here. Errors name the field.

import type { ChatMessage } from "../../engine/protocol.ts";
import { ValidationError } from "../../errors.ts";

interface Common {
  rawParams: Record<string, unknown>;
  stream: boolean;
  includeUsage: boolean;
  logprobs: boolean;
}
export interface ChatPlan extends Common {
  kind: "chat";
  messages: ChatMessage[];
  tools?: unknown[];
}
export interface CompletionPlan extends Common {
  kind: "completion";
  prompt: string | number[];
  echo: boolean;
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function num(body: Record<string, unknown>, field: string, min: number, max: number): number | undefined {
  const v = body[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v))
    throw new ValidationError(`\`${field}\` must be a number`, field);
  if (v < min || v > max)
    throw new ValidationError(`\`${field}\` must be between ${min} and ${max}, got ${v}`, field);
  return v;
}

function int(body: Record<string, unknown>, field: string, min: number, max: number): number | undefined {
  const v = num(body, field, min, max);
  if (v !== undefined && !Number.isInteger(v))
    throw new ValidationError(`\`${field}\` must be an integer`, field);
  return v;
}

function bool(body: Record<string, unknown>, field: string): boolean | undefined {
  const v = body[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "boolean") throw new ValidationError(`\`${field}\` must be a boolean`, field);
  return v;
}

/** The sampling fields both endpoints share, mapped to LMI names. */
function commonParams(body: Record<string, unknown>): Common & { topLogprobs: number | undefined } {
  const p: Record<string, unknown> = {};
  const maxTokens = int(body, "max_completion_tokens", 1, 1e9) ?? int(body, "max_tokens", 1, 1e9);
  if (maxTokens !== undefined) p.max_new_tokens = maxTokens;
  const temperature = num(body, "temperature", 0, 2);
  if (temperature !== undefined) {
    if (temperature === 0) p.do_sample = false;
    else {
      p.do_sample = true;
      p.temperature = temperature;
    }
  }
  const topP = num(body, "top_p", 0, 1);
  if (topP !== undefined) p.top_p = topP;
  const topK = int(body, "top_k", -1, 1e9);
  if (topK !== undefined) p.top_k = topK;
  const seed = int(body, "seed", Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  if (seed !== undefined) p.seed = seed;
  const fp = num(body, "frequency_penalty", -2, 2);
  if (fp !== undefined) p.frequency_penalty = fp;
  const pp = num(body, "presence_penalty", -2, 2);
  if (pp !== undefined) p.presence_penalty = pp;
  const rp = num(body, "repetition_penalty", 0, 1e9);
  if (rp !== undefined) p.repetition_penalty = rp;
  const ignoreEos = bool(body, "ignore_eos");
  if (ignoreEos !== undefined) p.ignore_eos_token = ignoreEos;
  if (body.stop !== undefined && body.stop !== null) {
    const stop = typeof body.stop === "string" ? [body.stop] : body.stop;
    if (!Array.isArray(stop) || !stop.every((s) => typeof s === "string")) {
      throw new ValidationError("`stop` must be a string or a list of strings", "stop");
    }
    p.stop_sequences = stop;
  }
  if (body.logit_bias !== undefined && body.logit_bias !== null) {
    if (!isObj(body.logit_bias)) throw new ValidationError("`logit_bias` must be an object", "logit_bias");
    for (const [k, v] of Object.entries(body.logit_bias)) {
      if (!/^\d+$/.test(k))
        throw new ValidationError(`\`logit_bias\` key '${k}' is not a token id`, "logit_bias");
      if (typeof v !== "number" || v < -100 || v > 100) {
        throw new ValidationError(`\`logit_bias\` values must be numbers in [-100, 100]`, "logit_bias");
      }
    }
    p.logit_bias = body.logit_bias;
  }
  const n = int(body, "n", 1, 1e9);
  if (n !== undefined && n !== 1)
    throw new ValidationError("`n` must be 1: one choice per request is supported", "n");
  const stream = bool(body, "stream") ?? false;
  let includeUsage = false;
  if (body.stream_options !== undefined && body.stream_options !== null) {
    if (!isObj(body.stream_options))
      throw new ValidationError("`stream_options` must be an object", "stream_options");
    includeUsage = bool(body.stream_options, "include_usage") ?? false;
  }
  return { rawParams: p, stream, includeUsage, logprobs: false, topLogprobs: undefined };
}

export function parseChatRequest(body: unknown): ChatPlan {
  if (!isObj(body)) throw new ValidationError("The request body must be a JSON object", "body");
  const messages = body.messages;
  if (!Array.isArray(messages) || messages.length === 0) {
    throw new ValidationError("`messages` must be a non-empty list", "messages");
  }
  messages.forEach((m, i) => {
    if (!isObj(m) || typeof m.role !== "string") {
      throw new ValidationError(`\`messages[${i}].role\` must be a string`, `messages[${i}].role`);
    }
    if (
      m.content !== undefined &&
      m.content !== null &&
      typeof m.content !== "string" &&
      !Array.isArray(m.content)
    ) {
      throw new ValidationError(
        `\`messages[${i}].content\` must be a string or a list of parts`,
        `messages[${i}].content`,
      );
    }
  });
  const c = commonParams(body);
  const logprobs = bool(body, "logprobs") ?? false;
  const top = int(body, "top_logprobs", 0, 20);
  if (top !== undefined && top > 0 && !logprobs) {
    throw new ValidationError("`top_logprobs` needs `logprobs` set to true", "top_logprobs");
  }
  if (logprobs) {
    c.rawParams.details = true;
    if (top) c.rawParams.top_n_tokens = top;
  }
  let tools: unknown[] | undefined;
  if (body.tools !== undefined && body.tools !== null) {
    if (!Array.isArray(body.tools)) throw new ValidationError("`tools` must be a list", "tools");
    tools = body.tools;
  }
  return { ...c, logprobs, kind: "chat", messages: messages as ChatMessage[], tools };
}

export function parseCompletionRequest(body: unknown): CompletionPlan {
  if (!isObj(body)) throw new ValidationError("The request body must be a JSON object", "body");
  let prompt: string | number[];
  const raw = body.prompt;
  if (typeof raw === "string") prompt = raw;
  else if (Array.isArray(raw) && raw.length === 1 && typeof raw[0] === "string") prompt = raw[0];
  else if (Array.isArray(raw) && raw.length > 0 && raw.every((t) => Number.isInteger(t) && t >= 0))
    prompt = raw;
  else {
    throw new ValidationError(
      "`prompt` must be a string, a list of one string, or a non-empty list of token ids (one prompt per request)",
      "prompt",
    );
  }
  const c = commonParams(body);
  const lp = int(body, "logprobs", 0, 5);
  if (lp !== undefined) {
    c.rawParams.details = true;
    if (lp > 0) c.rawParams.top_n_tokens = lp;
  }
  const echo = bool(body, "echo") ?? false;
  return { ...c, logprobs: lp !== undefined, kind: "completion", prompt, echo };
}
