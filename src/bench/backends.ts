// The wire protocols `lmi bench` speaks: request bodies and the meaning of each stream message for LMI
// /invocations (jsonlines), OpenAI /v1/completions and /v1/chat/completions (SSE), and TGI-style SSE.
// A message is a "chunk" when it carries generation (vLLM: an OpenAI message with `choices`; LMI/TGI:
// a message with a `token`); `reportedTokens` is the server's own count, preferred over counting chunks.

export const BACKEND_NAMES = ["lmi", "openai", "openai-chat", "tgi"] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];

export interface BodyInput {
  prompt: string | number[];
  outputLen: number;
  ignoreEos: boolean;
  model?: string;
}

export interface StreamEvent {
  isChunk: boolean;
  /** Tokens this message counts under the chunk-counting fallback. */
  numTokens: number;
  reportedTokens?: number;
  error?: string;
}

export interface BackendSpec {
  name: BackendName;
  defaultEndpoint: string;
  /** Whether `prompt` may be token ids; otherwise prompts must be text. */
  acceptsTokenIds: boolean;
  supportsIgnoreEos: boolean;
  buildBody(input: BodyInput): Record<string, unknown>;
  parse(message: unknown): StreamEvent;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const NONE: StreamEvent = { isChunk: false, numTokens: 0 };

function errorText(m: Obj): string | undefined {
  const e = m.error;
  if (typeof e === "string") return m.code !== undefined ? `${m.code}: ${e}` : e;
  if (isObj(e)) return typeof e.message === "string" ? e.message : JSON.stringify(e);
  return undefined;
}

function intOr(v: unknown): number | undefined {
  return typeof v === "number" && Number.isInteger(v) && v >= 0 ? v : undefined;
}

/** LMI jsonlines (and its tgi_compat SSE twin): one token per line, details.generated_tokens last. */
function parseTokenLine(m: unknown, errorField: "error_msg"): StreamEvent {
  if (!isObj(m)) return { ...NONE, error: `unexpected stream line ${JSON.stringify(m)}` };
  const err = errorText(m);
  if (err !== undefined) return { ...NONE, error: err };
  const details = isObj(m.details) ? m.details : undefined;
  if (details?.finish_reason === "error") {
    const tok = isObj(m.token) ? m.token : {};
    return { ...NONE, error: String(tok[errorField] ?? "generation failed (finish_reason error)") };
  }
  const reportedTokens = intOr(details?.generated_tokens);
  if (!isObj(m.token)) return { ...NONE, reportedTokens };
  return { isChunk: true, numTokens: 1, reportedTokens };
}

const lmi: BackendSpec = {
  name: "lmi",
  defaultEndpoint: "/invocations",
  acceptsTokenIds: false,
  supportsIgnoreEos: true,
  buildBody: ({ prompt, outputLen, ignoreEos }) => ({
    inputs: prompt,
    // details: true makes the last line carry generated_tokens, the server's own count.
    parameters: { max_new_tokens: outputLen, do_sample: false, details: true, ignore_eos_token: ignoreEos },
    stream: true,
  }),
  parse: (m) => parseTokenLine(m, "error_msg"),
};

function openAiUsage(m: Obj): number | undefined {
  return isObj(m.usage) ? intOr(m.usage.completion_tokens) : undefined;
}

const openaiCompletions: BackendSpec = {
  name: "openai",
  defaultEndpoint: "/v1/completions",
  acceptsTokenIds: true,
  supportsIgnoreEos: true,
  buildBody: ({ prompt, outputLen, ignoreEos, model }) => ({
    ...(model !== undefined ? { model } : {}),
    prompt,
    max_tokens: outputLen,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
    ...(ignoreEos ? { ignore_eos: true } : {}),
  }),
  parse: (m) => parseOpenAiChunk(m, (choice) => choice.text),
};

const openaiChat: BackendSpec = {
  name: "openai-chat",
  defaultEndpoint: "/v1/chat/completions",
  acceptsTokenIds: false,
  supportsIgnoreEos: true,
  buildBody: ({ prompt, outputLen, ignoreEos, model }) => ({
    ...(model !== undefined ? { model } : {}),
    messages: [{ role: "user", content: prompt }],
    max_completion_tokens: outputLen,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
    ...(ignoreEos ? { ignore_eos: true } : {}),
  }),
  parse: (m) => parseOpenAiChunk(m, (choice) => (isObj(choice.delta) ? choice.delta.content : undefined)),
};

/**
 * One OpenAI SSE message: an error, a usage-only chunk, or a chunk whose first choice carries text
 * (`textOf` picks it: `text` for completions, `delta.content` for chat); non-empty text counts one token.
 */
function parseOpenAiChunk(m: unknown, textOf: (choice: Record<string, unknown>) => unknown): StreamEvent {
  if (!isObj(m)) return { ...NONE, error: `unexpected SSE message ${JSON.stringify(m)}` };
  const err = errorText(m);
  if (err !== undefined) return { ...NONE, error: err };
  const choices = Array.isArray(m.choices) ? m.choices : [];
  const reportedTokens = openAiUsage(m);
  if (choices.length === 0) return { ...NONE, reportedTokens };
  const text = isObj(choices[0]) ? textOf(choices[0]) : undefined;
  return { isChunk: true, numTokens: typeof text === "string" && text !== "" ? 1 : 0, reportedTokens };
}

const tgi: BackendSpec = {
  name: "tgi",
  defaultEndpoint: "/generate_stream",
  acceptsTokenIds: false,
  // TGI's parameters have no ignore_eos; fixed lengths cannot be forced there.
  supportsIgnoreEos: false,
  // `stream` is what LMI's tgi_compat /invocations needs; TGI's /generate_stream streams anyway and its
  // `/` route reads the same flag.
  buildBody: ({ prompt, outputLen }) => ({
    inputs: prompt,
    parameters: { max_new_tokens: outputLen, do_sample: false, details: true },
    stream: true,
  }),
  parse: (m) => parseTokenLine(m, "error_msg"),
};

export const BACKENDS: Record<BackendName, BackendSpec> = {
  lmi,
  openai: openaiCompletions,
  "openai-chat": openaiChat,
  tgi,
};
