// A hand-built LlmEngine for formatter and route unit tests: it answers every prompt with a fixed
// word list, one token per delta, so tests can assert exact bytes. The Done-when tests use the real
// engine (test/e2e); this one exists to make error paths (prompt too long, failure mid-stream,
// engine death, slow streams for disconnects) deterministic.

import type {
  ChatMessage,
  GenerateRequest,
  LlmEngine,
  RequestOutput,
  TokenInfo,
} from "../../src/engine/protocol.ts";
import { validateParameters } from "../../src/engine/sampling-params.ts";
import { PromptTooLongError } from "../../src/errors.ts";
import type { ModelRegistry } from "../../src/registry/registry.ts";
import type { LoadedModel, ModelSpec } from "../../src/registry/types.ts";
import { DEFAULT_SERVING_OPTIONS, type ServingOptions } from "../../src/registry/types.ts";

export interface Script {
  words: string[];
  /** Prompts longer than this many characters are rejected with PromptTooLongError. */
  maxPromptChars?: number;
  /** Finish with finishReason "error" after this many tokens. */
  failAfter?: number;
  /** Throw this from the generator after this many tokens. */
  throwAfter?: { count: number; error: Error };
  delayMs?: number;
}

export class ScriptedEngine implements LlmEngine {
  readonly modelInfo = {
    architecture: "Scripted",
    modelType: "scripted",
    vocabSize: 100,
    maxModelLen: 64,
    eosTokenIds: [0],
    bosTokenId: null,
    dtype: "float32",
  };
  aborted = 0;
  requests: GenerateRequest[] = [];
  constructor(readonly script: Script) {}

  encode(text: string): number[] {
    return [...text].map((c) => c.charCodeAt(0) % 100);
  }
  decode(ids: number[]): string {
    return ids.map((i) => String.fromCharCode(i + 32)).join("");
  }
  applyChatTemplate(messages: ChatMessage[]): string {
    return `${messages.map((m) => `<${m.role}>${String(m.content)}`).join("")}<assistant>`;
  }
  stats() {
    return {
      numRunning: 0,
      numWaiting: 0,
      kvCacheUsage: 0.25,
      numPreemptions: 0,
      numPromptTokensTotal: 0,
      numGenerationTokensTotal: 0,
      prefixCacheHitRate: 0,
    };
  }
  async shutdown(): Promise<void> {}

  async *generate(request: GenerateRequest, signal?: AbortSignal): AsyncIterable<RequestOutput> {
    this.requests.push(request);
    const s = this.script;
    const promptLen =
      typeof request.prompt === "string" ? request.prompt.length : request.prompt.tokenIds.length;
    if (s.maxPromptChars !== undefined && promptLen > s.maxPromptChars) {
      throw new PromptTooLongError(promptLen, s.maxPromptChars);
    }
    const n = Math.min(request.params.maxNewTokens, s.words.length);
    let text = "";
    for (let i = 0; i < n; i++) {
      if (s.delayMs) await new Promise((r) => setTimeout(r, s.delayMs));
      if (signal?.aborted) {
        this.aborted++;
        yield {
          requestId: request.requestId,
          tokens: [],
          textDelta: "",
          finished: true,
          finishReason: "abort",
          generatedText: text,
          numGeneratedTokens: i,
          numPromptTokens: promptLen,
        };
        return;
      }
      if (s.throwAfter && i === s.throwAfter.count) throw s.throwAfter.error;
      if (s.failAfter !== undefined && i === s.failAfter) {
        yield {
          requestId: request.requestId,
          tokens: [],
          textDelta: "",
          finished: true,
          finishReason: "error",
          error: "boom in step",
          numGeneratedTokens: i,
        };
        return;
      }
      const w = s.words[i];
      const tok: TokenInfo = { id: i + 1, text: w, logprob: -0.5 - i, special: false };
      if (request.params.topNTokens > 0) {
        tok.top = Array.from({ length: request.params.topNTokens }, (_, k) => ({
          id: 50 + k,
          text: `alt${k}`,
          logprob: -1 - k,
          special: false,
        }));
      }
      text += w;
      const last = i === n - 1;
      yield {
        requestId: request.requestId,
        tokens: [tok],
        textDelta: w,
        finished: last,
        ...(last
          ? {
              finishReason: "length" as const,
              generatedText: text,
              numPromptTokens: promptLen,
              numGeneratedTokens: n,
              seed: 7,
            }
          : {}),
      };
    }
  }
}

export function scriptedModel(engine: LlmEngine, options: Partial<ServingOptions> = {}): LoadedModel {
  return {
    backend: {
      kind: "engine",
      engine,
      validateParameters: (raw) => validateParameters(raw, { maxNewTokens: 30 }).params,
    },
    options: { ...DEFAULT_SERVING_OPTIONS, ...options },
    close: async () => {},
  };
}

/** Registers a model and waits for it. */
export async function addModel(
  registry: ModelRegistry,
  name: string,
  url = `/models/${name}`,
): Promise<void> {
  const spec: ModelSpec = { name, url, overrides: {} };
  await registry.register(spec, { loadedAtStartup: true }).ready;
}
