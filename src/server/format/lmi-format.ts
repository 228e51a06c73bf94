// LMI output formatters (spec §3.3, §3.4, §3.6): json, jsonlines, sse, 3p, 3p_stream, none, with the
// tgi_compat variants (array-wrapped json; `logprob`/`special` token names; TGI stream lines).
// Invariants: `generated_text` and `details` appear only on the last line of a stream; details
// carries `tokens` only in the non-streaming body; a failed generation ends with the spec's error line.

import type { RequestOutput, TokenInfo } from "../../engine/protocol.ts";
import { InferenceFailedError, mapError } from "../http-errors.ts";
import { type FormatContext, finalJsonFormatter, GenerationState, type OutputFormatter } from "./types.ts";

export const LMI_FORMATTERS = ["json", "jsonlines", "sse", "3p", "3p_stream", "none"] as const;
export type LmiFormatterName = (typeof LMI_FORMATTERS)[number];

function tokenJson(t: TokenInfo, tgi: boolean): Record<string, unknown> {
  if (tgi) return { id: t.id, text: t.text, logprob: t.logprob, special: t.special };
  const o: Record<string, unknown> = { id: t.id, text: t.text, log_prob: t.logprob };
  if (t.special) o.special_token = true;
  return o;
}

function topTokensJson(tokens: TokenInfo[], tgi: boolean): Array<Array<Record<string, unknown>>> {
  return tokens.map((t) =>
    (t.top ?? []).map((a) =>
      tokenJson({ id: a.id, text: a.text, logprob: a.logprob, special: a.special }, tgi),
    ),
  );
}

function fullText(ctx: FormatContext, text: string): string {
  return ctx.returnFullText ? ctx.inputs + text : text;
}

function finalDetails(ctx: FormatContext, st: GenerationState, out: RequestOutput, withTokens: boolean) {
  const d: Record<string, unknown> = {
    finish_reason: out.finishReason ?? "length",
    generated_tokens: out.numGeneratedTokens ?? st.numTokens,
    inputs: ctx.inputs,
  };
  if (ctx.tgiCompat && out.seed !== undefined) d.seed = out.seed;
  if (withTokens) {
    d.tokens = st.tokens.map((t) => tokenJson(t, ctx.tgiCompat));
    if (ctx.decoderInputDetails && out.prefill) {
      d.prefill = out.prefill.map((p) =>
        ctx.tgiCompat
          ? { id: p.id, text: p.text, logprob: p.logprob }
          : { id: p.id, text: p.text, log_prob: p.logprob },
      );
    }
    if (ctx.topNTokens > 0) d.top_tokens = topTokensJson(st.tokens, ctx.tgiCompat);
  }
  return d;
}

/** Non-streaming `json`: one body at the end; tgi_compat wraps it in a one-element array. */
function jsonFormatter(ctx: FormatContext): OutputFormatter {
  return finalJsonFormatter((out, st) => {
    const body: Record<string, unknown> = { generated_text: fullText(ctx, out.generatedText ?? st.text) };
    if (ctx.details || ctx.tgiCompat) body.details = finalDetails(ctx, st, out, true);
    return ctx.tgiCompat ? [body] : body;
  });
}

/** Token lines (jsonlines or sse framing); the TGI form adds index/null fields like TGI's StreamResponse. */
function lineFormatter(ctx: FormatContext, framing: "jsonlines" | "sse"): OutputFormatter {
  const st = new GenerationState();
  const frame = (o: unknown) =>
    framing === "sse" ? `data: ${JSON.stringify(o)}\n\n` : `${JSON.stringify(o)}\n`;
  const errorLine = (message: string) =>
    frame({
      token: { id: -1, text: "", log_prob: -1, special_token: true, error_msg: message },
      generated_text: "",
      details: { finish_reason: "error", generated_tokens: st.numTokens, inputs: ctx.inputs },
    });
  return {
    contentType: framing === "sse" ? "text/event-stream" : "application/jsonlines",
    streaming: true,
    delta(out) {
      const first = st.numTokens;
      st.onDelta(out);
      if (out.finished && out.finishReason === "error") return errorLine(out.error ?? "generation failed");
      let chunk = "";
      const n = out.tokens.length;
      const lastIdx = out.finished ? n - 1 : -1;
      for (let i = 0; i < n; i++) {
        const t = out.tokens[i];
        const line: Record<string, unknown> = ctx.tgiCompat
          ? { index: first + i, token: tokenJson(t, true), generated_text: null, details: null }
          : { token: tokenJson(t, false) };
        if (ctx.topNTokens > 0) line.top_tokens = topTokensJson([t], ctx.tgiCompat)[0];
        if (i === lastIdx) Object.assign(line, finalFields(out));
        chunk += frame(line);
      }
      // A final delta without a token (abort, stop found in held-back text) still closes the stream.
      if (out.finished && n === 0) chunk += frame(finalFields(out));
      return chunk;
    },
    error(err) {
      return errorLine(mapError(err).message);
    },
  };

  function finalFields(out: RequestOutput): Record<string, unknown> {
    const f: Record<string, unknown> = { generated_text: fullText(ctx, out.generatedText ?? st.text) };
    if (ctx.details || ctx.tgiCompat) f.details = finalDetails(ctx, st, out, false);
    return f;
  }
}

/** Bedrock-style `3p` (one object) and `3p_stream` (one object per delta). */
function threePFormatter(ctx: FormatContext, stream: boolean): OutputFormatter {
  const st = new GenerationState();
  let promptTokens = 0;
  return {
    contentType: stream ? "application/jsonlines" : "application/json",
    streaming: stream,
    delta(out) {
      const firstDelta = st.numTokens === 0;
      st.onDelta(out);
      if (out.numPromptTokens !== undefined) promptTokens = out.numPromptTokens;
      const failed = out.finished && out.finishReason === "error";
      if (!stream) {
        if (!out.finished) return "";
        const body: Record<string, unknown> = {
          body: {
            generation: failed ? "" : fullText(ctx, out.generatedText ?? st.text),
            prompt_token_count: promptTokens,
            generation_token_count: st.numTokens,
            stop_reason: out.finishReason ?? "length",
          },
          metering: { inputTokenCount: promptTokens, outputTokenCount: st.numTokens },
          content_type: "application/json",
        };
        if (failed) body.error = { error: { error_code: 400, error_msg: out.error ?? "generation failed" } };
        return JSON.stringify(body);
      }
      if (out.tokens.length === 0 && !out.finished) return "";
      const line: Record<string, unknown> = {
        body: {
          generation: out.textDelta,
          prompt_token_count: firstDelta ? (out.numPromptTokens ?? null) : null,
          generation_token_count: st.numTokens,
          stop_reason: out.finished ? (out.finishReason ?? "length") : null,
        },
        metering: { inputTokenCount: promptTokens, outputTokenCount: st.numTokens },
        content_type: "application/jsonlines",
      };
      if (failed) line.error = { error: { error_code: 400, error_msg: out.error ?? "generation failed" } };
      return `${JSON.stringify(line)}\n`;
    },
    error(err) {
      const e = mapError(err);
      return `${JSON.stringify({ body: null, error: { error: { error_code: e.status, error_msg: e.message } } })}\n`;
    },
  };
}

/** `none`: the raw generated text (text/plain), streamed as it comes or in one piece. */
function noneFormatter(ctx: FormatContext, stream: boolean): OutputFormatter {
  const st = new GenerationState();
  return {
    contentType: "text/plain",
    streaming: stream,
    delta(out) {
      const first = st.numTokens === 0 && st.text === "";
      st.onDelta(out);
      if (out.finished && out.finishReason === "error") {
        if (!stream) throw new InferenceFailedError(out.error ?? "generation failed");
        return `\n${out.error ?? "generation failed"}`;
      }
      if (stream) return (first && ctx.returnFullText ? ctx.inputs : "") + out.textDelta;
      return out.finished ? fullText(ctx, out.generatedText ?? st.text) : "";
    },
    error(err) {
      return `\n${mapError(err).message}`;
    },
  };
}

/** Picks the formatter; `stream` upgrades a non-streaming name to its streaming counterpart. */
export function createLmiFormatter(
  name: LmiFormatterName,
  stream: boolean,
  ctx: FormatContext,
): OutputFormatter {
  switch (name) {
    case "json":
      return stream ? lineFormatter(ctx, ctx.tgiCompat ? "sse" : "jsonlines") : jsonFormatter(ctx);
    case "jsonlines":
      return lineFormatter(ctx, "jsonlines");
    case "sse":
      return lineFormatter(ctx, "sse");
    case "3p":
    case "3p_stream":
      return threePFormatter(ctx, stream || name === "3p_stream");
    case "none":
      return noneFormatter(ctx, stream);
  }
}
