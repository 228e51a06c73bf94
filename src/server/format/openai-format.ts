// OpenAI-shaped formatters (spec §3.7): chat completions (json_chat, jsonlines_chat, sse_chat) and
// text completions, non-streaming and streaming. Streams send `role` on the first chunk,
// `finish_reason` on the last, a usage chunk when stream_options.include_usage, and `data: [DONE]`
// for SSE. Token logprobs use the real token strings (we do not copy LMI's number-in-token quirk).

import type { FinishReason, RequestOutput, TokenInfo } from "../../engine/protocol.ts";
import { InferenceFailedError, mapError } from "../http-errors.ts";
import { type FormatContext, finalJsonFormatter, GenerationState, type OutputFormatter } from "./types.ts";

export const CHAT_FORMATTERS = ["json_chat", "jsonlines_chat", "sse_chat"] as const;
export type ChatFormatterName = (typeof CHAT_FORMATTERS)[number];

let counter = 0;
/** Unique, sortable-enough ids (DJL uses chatcmpl-<n>). */
function nextId(prefix: string): string {
  counter = (counter + 1) % Number.MAX_SAFE_INTEGER;
  return `${prefix}-${Date.now().toString(36)}${counter.toString(36)}`;
}

export function openAiFinishReason(r: FinishReason | undefined): string {
  if (r === "length") return "length";
  if (r === "abort") return "abort";
  return "stop";
}

function bytesOf(s: string): number[] {
  return [...Buffer.from(s, "utf8")];
}

function chatLogprobs(tokens: TokenInfo[]) {
  return {
    content: tokens.map((t) => ({
      token: t.text,
      logprob: t.logprob,
      bytes: bytesOf(t.text),
      top_logprobs: (t.top ?? []).map((a) => ({ token: a.text, logprob: a.logprob, bytes: bytesOf(a.text) })),
    })),
  };
}

function usage(out: RequestOutput, st: GenerationState) {
  const prompt = out.numPromptTokens ?? 0;
  const completion = out.numGeneratedTokens ?? st.numTokens;
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

function frameFor(framing: "json" | "jsonlines" | "sse") {
  return (o: unknown) => (framing === "sse" ? `data: ${JSON.stringify(o)}\n\n` : `${JSON.stringify(o)}\n`);
}

/**
 * The frame of a streamed chunk whose only varying part is one JSON string value: `head` is everything before the
 * value and `tail` everything after, both as JSON.stringify of the chunk object writes them (same keys, same order),
 * so a token's chunk costs one string escape instead of building and serializing an object (~2 us a chunk).
 */
function stringChunkFrame(
  framing: "jsonlines" | "sse",
  head: string,
  tail: string,
): (value: string) => string {
  const open = framing === "sse" ? `data: ${head}` : head;
  const close = framing === "sse" ? `${tail}\n\n` : `${tail}\n`;
  return (value) => open + JSON.stringify(value) + close;
}

function errorChunk(framing: "jsonlines" | "sse", err: unknown, done: boolean): string {
  const e = mapError(err);
  const body = { object: "error", error: { message: e.message, type: e.type, code: e.status } };
  return frameFor(framing)(body) + (framing === "sse" && done ? "data: [DONE]\n\n" : "");
}

export function createChatFormatter(
  name: ChatFormatterName,
  stream: boolean,
  ctx: FormatContext,
): OutputFormatter {
  const st = new GenerationState();
  const id = nextId("chatcmpl");
  const created = Math.floor(Date.now() / 1000);
  if (name === "json_chat" && !stream) {
    return finalJsonFormatter((out, st) => ({
      id,
      object: "chat.completion",
      created,
      model: ctx.model,
      choices: [
        {
          index: 0,
          message: { role: "assistant", content: out.generatedText ?? st.text },
          logprobs: ctx.logprobs ? chatLogprobs(st.tokens) : null,
          finish_reason: openAiFinishReason(out.finishReason),
        },
      ],
      usage: usage(out, st),
    }));
  }
  const framing = name === "sse_chat" ? "sse" : "jsonlines";
  const frame = frameFor(framing);
  let sentRole = false;
  const chunk = (delta: Record<string, unknown>, logprobs: unknown, finish: string | null) =>
    frame({
      id,
      object: "chat.completion.chunk",
      created,
      model: ctx.model,
      choices: [{ index: 0, delta, logprobs, finish_reason: finish }],
      ...(ctx.includeUsage ? { usage: null } : {}),
    });
  // The chunk of most tokens: content only, no logprobs, not the last (what chunk() writes for it).
  const contentChunk = stringChunkFrame(
    framing,
    `{"id":${JSON.stringify(id)},"object":"chat.completion.chunk","created":${created},"model":${JSON.stringify(ctx.model)},"choices":[{"index":0,"delta":{"content":`,
    `},"logprobs":null,"finish_reason":null}]${ctx.includeUsage ? ',"usage":null' : ""}}`,
  );
  return {
    contentType: framing === "sse" ? "text/event-stream" : "application/jsonlines",
    streaming: true,
    delta(out) {
      st.onDelta(out);
      if (out.finished && out.finishReason === "error") {
        return errorChunk(framing, new InferenceFailedError(out.error ?? "generation failed"), true);
      }
      let s = "";
      if (out.tokens.length > 0 || out.textDelta !== "" || out.finished) {
        const lp = ctx.logprobs && out.tokens.length > 0 ? chatLogprobs(out.tokens) : null;
        if (sentRole && lp === null && !out.finished) {
          s += contentChunk(out.textDelta);
        } else {
          const delta: Record<string, unknown> = { content: out.textDelta };
          if (!sentRole) {
            delta.role = "assistant";
            sentRole = true;
          }
          s += chunk(delta, lp, out.finished ? openAiFinishReason(out.finishReason) : null);
        }
      }
      if (out.finished) {
        if (ctx.includeUsage) {
          s += frame({
            id,
            object: "chat.completion.chunk",
            created,
            model: ctx.model,
            choices: [],
            usage: usage(out, st),
          });
        }
        if (framing === "sse") s += "data: [DONE]\n\n";
      }
      return s;
    },
    error: (err) => errorChunk(framing, err, true),
  };
}

/** Completions logprobs: parallel arrays plus per-position {token: logprob} maps. */
function completionLogprobs(tokens: TokenInfo[], offset0: number) {
  let offset = offset0;
  const textOffset: number[] = [];
  for (const t of tokens) {
    textOffset.push(offset);
    offset += t.text.length;
  }
  return {
    tokens: tokens.map((t) => t.text),
    token_logprobs: tokens.map((t) => t.logprob),
    top_logprobs: tokens.map((t) => Object.fromEntries((t.top ?? []).map((a) => [a.text, a.logprob]))),
    text_offset: textOffset,
  };
}

/** /v1/completions (and `prompt` bodies): text_completion objects; SSE with [DONE] when streaming. */
export function createCompletionFormatter(stream: boolean, ctx: FormatContext): OutputFormatter {
  const st = new GenerationState();
  const id = nextId("cmpl");
  const created = Math.floor(Date.now() / 1000);
  const echo = ctx.returnFullText ? ctx.inputs : "";
  // One text_completion object: the whole answer, a stream chunk (one choice) or the usage chunk (none).
  const completion = (choices: object[]) => ({
    id,
    object: "text_completion",
    created,
    model: ctx.model,
    choices,
  });
  if (!stream) {
    return finalJsonFormatter((out, st) => ({
      ...completion([
        {
          index: 0,
          text: echo + (out.generatedText ?? st.text),
          logprobs: ctx.logprobs ? completionLogprobs(st.tokens, echo.length) : null,
          finish_reason: openAiFinishReason(out.finishReason),
        },
      ]),
      usage: usage(out, st),
    }));
  }
  const frame = frameFor("sse");
  // The chunk of most tokens: no logprobs, not the last (what the object below serializes to for it).
  const textChunk = stringChunkFrame(
    "sse",
    `{"id":${JSON.stringify(id)},"object":"text_completion","created":${created},"model":${JSON.stringify(ctx.model)},"choices":[{"index":0,"text":`,
    `,"logprobs":null,"finish_reason":null}]${ctx.includeUsage ? ',"usage":null' : ""}}`,
  );
  let textSoFar = echo.length;
  let first = true;
  return {
    contentType: "text/event-stream",
    streaming: true,
    delta(out) {
      st.onDelta(out);
      if (out.finished && out.finishReason === "error") {
        return errorChunk("sse", new InferenceFailedError(out.error ?? "generation failed"), true);
      }
      let s = "";
      if (out.tokens.length > 0 || out.textDelta !== "" || out.finished) {
        const text = (first ? echo : "") + out.textDelta;
        first = false;
        const lp = ctx.logprobs ? completionLogprobs(out.tokens, textSoFar) : null;
        textSoFar += out.textDelta.length;
        if (lp === null && !out.finished) s += textChunk(text);
        else
          s += frame({
            ...completion([
              {
                index: 0,
                text,
                logprobs: lp,
                finish_reason: out.finished ? openAiFinishReason(out.finishReason) : null,
              },
            ]),
            ...(ctx.includeUsage ? { usage: null } : {}),
          });
      }
      if (out.finished) {
        if (ctx.includeUsage) {
          s += frame({ ...completion([]), usage: usage(out, st) });
        }
        s += "data: [DONE]\n\n";
      }
      return s;
    },
    error: (err) => errorChunk("sse", err, true),
  };
}
