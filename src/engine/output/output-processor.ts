// Turns the engine core's per-request token deltas into client-facing RequestOutputs: incremental
// text (never a broken UTF-8 character), stop sequences across tokens, token logprobs and top
// alternatives, prompt logprobs, and the summary on the final delta. One RequestState per request;
// a stop-sequence hit finishes the state and reports it so the engine can free the request.

import type { TokenLogprobs } from "../../executor/types.ts";
import type { HfTokenizer } from "../../tokenizer/tokenizer.ts";
import type { FinishReason, GenerationParams, RequestOutput, TokenInfo } from "../protocol.ts";
import type { EngineCoreOutput } from "../scheduler/scheduler.ts";
import { IncrementalDetokenizer } from "./detokenizer.ts";
import { StopStrings } from "./stop-strings.ts";

export interface RequestStateInit {
  requestId: string;
  promptTokenIds: readonly number[];
  params: GenerationParams;
  seed: number;
}

export class RequestState {
  readonly requestId: string;
  readonly promptTokenIds: readonly number[];
  readonly params: GenerationParams;
  readonly seed: number;
  private readonly tokenizer: HfTokenizer;
  private readonly detok: IncrementalDetokenizer;
  private readonly stops: StopStrings;
  /** Generated text so far (cut at a stop sequence once found). */
  private text = "";
  /** How much of `text` has been sent as textDelta. */
  private emitted = 0;
  private numGenerated = 0;
  private readonly promptLogprobs: Array<number | null>;
  finished = false;

  /** Whether a delta's text can end the request (stop strings); if not, process() may run late. */
  get canStopOnText(): boolean {
    return !this.stops.isEmpty;
  }

  constructor(init: RequestStateInit, tokenizer: HfTokenizer) {
    this.requestId = init.requestId;
    this.promptTokenIds = init.promptTokenIds;
    this.params = init.params;
    this.seed = init.seed;
    this.tokenizer = tokenizer;
    const skip = init.params.skipSpecialTokens;
    this.detok = new IncrementalDetokenizer((ids) => tokenizer.decode(ids, skip), init.promptTokenIds);
    this.stops = new StopStrings(init.params.stopSequences, init.params.includeStopStrInOutput);
    this.promptLogprobs = new Array(init.promptTokenIds.length).fill(null);
  }

  /**
   * Applies one core output. Returns the delta to send, and stopped=true when a stop sequence ended
   * the request here (the scheduler does not know yet).
   */
  process(core: EngineCoreOutput): { output: RequestOutput; stopped: boolean } {
    if (core.newPromptLogprobs !== null)
      this.recordPromptLogprobs(core.newPromptLogprobs, core.promptLogprobsStart);
    const tokens: TokenInfo[] = [];
    let finishReason: FinishReason | null = core.finishReason;
    let stopped = false;
    for (let i = 0; i < core.newTokenIds.length; i++) {
      const id = core.newTokenIds[i];
      const piece = this.detok.push(id);
      tokens.push(this.tokenInfo(id, piece, core.newLogprobs[i]));
      this.numGenerated++;
      if (piece.length === 0 || this.stops.isEmpty) continue;
      this.text += piece;
      // Like eos, stop sequences cannot end a request before min_new_tokens (vLLM does the same).
      if (this.numGenerated <= this.params.minNewTokens) continue;
      const cut = this.stops.check(this.text, piece.length);
      if (cut !== null) {
        this.text = this.text.slice(0, cut);
        stopped = finishReason === null;
        finishReason = "stop_sequence";
        break; // tokens after the stop are dropped
      }
    }
    if (this.stops.isEmpty) this.text += tokens.map((t) => t.text).join("");
    return { output: this.emit(tokens, finishReason), stopped };
  }

  /** The final delta for a request ended from outside the model (abort, executor error). */
  finish(reason: FinishReason, error?: string): RequestOutput {
    const out = this.emit([], reason);
    if (error !== undefined) out.error = error;
    return out;
  }

  private emit(tokens: TokenInfo[], finishReason: FinishReason | null): RequestOutput {
    const finished = finishReason !== null;
    // Keep back what may be the start of a stop sequence, unless nothing more will come.
    const end = finished ? this.text.length : Math.max(this.emitted, this.text.length - this.stops.holdBack);
    const textDelta = this.text.slice(this.emitted, end);
    this.emitted = end;
    const out: RequestOutput = { requestId: this.requestId, tokens, textDelta, finished };
    if (!finished) return out;
    this.finished = true;
    out.finishReason = finishReason;
    out.generatedText = this.text;
    out.numPromptTokens = this.promptTokenIds.length;
    out.numGeneratedTokens = this.numGenerated;
    out.seed = this.seed;
    if (this.params.decoderInputDetails) {
      out.prefill = this.promptTokenIds.map((id, i) => ({
        id,
        text: this.tokenizer.decode([id], false),
        logprob: this.promptLogprobs[i],
      }));
    }
    return out;
  }

  private tokenInfo(id: number, text: string, lp: TokenLogprobs | undefined): TokenInfo {
    const info: TokenInfo = {
      id,
      text,
      logprob: lp?.logprob ?? Number.NaN,
      special: this.tokenizer.isSpecial(id),
    };
    if (this.params.topNTokens > 0 && lp !== undefined) {
      info.top = lp.top.slice(0, this.params.topNTokens).map(([tid, logprob]) => ({
        id: tid,
        text: this.tokenizer.decode([tid], false),
        logprob,
        special: this.tokenizer.isSpecial(tid),
      }));
    }
    return info;
  }

  /**
   * A step that computed positions start.. scores prompt tokens start+1.. (logits at p score token
   * p+1); a chunk starting at 0 leads with null for token 0. Written by absolute position, so a chunk
   * recomputed after preemption overwrites rather than duplicates.
   */
  private recordPromptLogprobs(chunk: Array<TokenLogprobs | null>, start: number): void {
    const first = start === 0 ? 0 : start + 1;
    for (let i = 0; i < chunk.length; i++) {
      const pos = first + i;
      if (pos > 0 && pos < this.promptLogprobs.length) this.promptLogprobs[pos] = chunk[i]?.logprob ?? null;
    }
  }
}
