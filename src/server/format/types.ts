// The contract every output formatter keeps (LMI json/jsonlines/sse/3p/none, OpenAI chat and
// completions). A formatter turns each RequestOutput delta into bytes to send (possibly ""), and
// builds the in-stream error chunk. A non-streaming formatter returns "" until the final delta, so
// the writer can answer it as one Content-Length response (spec §2.4).

import type { RequestOutput } from "../../engine/protocol.ts";
import { InferenceFailedError, mapError } from "../http-errors.ts";

export interface FormatContext {
  requestId: string;
  /** The prompt text as the client sent it (details.inputs; prepended for return_full_text). */
  inputs: string;
  details: boolean;
  decoderInputDetails: boolean;
  topNTokens: number;
  returnFullText: boolean;
  tgiCompat: boolean;
  /** The model name clients see (OpenAI `model`). */
  model: string;
  /** OpenAI: emit a usage chunk at the end of a stream (stream_options.include_usage). */
  includeUsage: boolean;
  /** OpenAI chat: return logprobs (logprobs=true) with top_logprobs alternatives. */
  logprobs: boolean;
}

export interface OutputFormatter {
  readonly contentType: string;
  /** Whether chunks go out as they come (chunked) or in one response at the end. */
  readonly streaming: boolean;
  /** Bytes for one delta; for the final delta, everything left to send (trailers included). */
  delta(out: RequestOutput): string;
  /** The last chunk after a failure once headers are sent (spec §3.4). */
  error(err: unknown): string;
}

/** Accumulates what the final line or body needs. */
export class GenerationState {
  numTokens = 0;
  text = "";
  tokens: RequestOutput["tokens"] = [];
  onDelta(out: RequestOutput): void {
    this.numTokens += out.tokens.length;
    this.text += out.textDelta;
    for (const t of out.tokens) this.tokens.push(t);
  }
}

/**
 * A non-streaming JSON formatter: accumulates the deltas and answers one body, built from the final
 * delta, at the end; a failed generation throws (the writer answers with its status and message).
 */
export function finalJsonFormatter(
  body: (out: RequestOutput, st: GenerationState) => unknown,
): OutputFormatter {
  const st = new GenerationState();
  return {
    contentType: "application/json",
    streaming: false,
    delta(out) {
      st.onDelta(out);
      if (!out.finished) return "";
      if (out.finishReason === "error") throw new InferenceFailedError(out.error ?? "generation failed");
      return JSON.stringify(body(out, st));
    },
    error(err) {
      const e = mapError(err);
      return JSON.stringify({ code: e.status, error: e.message });
    },
  };
}
