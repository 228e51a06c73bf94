// What an engine does for a request before its step loop sees it: tokenization, the chat template, and
// parameter validation with the server's defaults (decoding_strategy, max_new_tokens). Shared by the Engine
// and by ThreadEngine, which does this on the HTTP thread while its loop runs on another.

import type { ChatTemplateOptions } from "../tokenizer/chat-template.ts";
import type { HfTokenizer } from "../tokenizer/tokenizer.ts";
import type { ResolvedEngineOptions } from "./engine-options.ts";
import type { ChatMessage } from "./protocol.ts";
import { type ParameterDefaults, type ValidatedParameters, validateParameters } from "./sampling-params.ts";

export class EngineFront {
  /** Pass to validateParameters so server defaults (decoding_strategy, max_new_tokens) apply. */
  readonly parameterDefaults: ParameterDefaults;

  constructor(
    readonly tokenizer: HfTokenizer,
    options: ResolvedEngineOptions,
  ) {
    this.parameterDefaults = { strategy: options.defaultStrategy, maxNewTokens: options.defaultMaxNewTokens };
  }

  /** validateParameters with this engine's server defaults. */
  validateParameters(raw: unknown): ValidatedParameters {
    return validateParameters(raw, this.parameterDefaults);
  }

  encode(text: string, addSpecialTokens = true): number[] {
    return this.tokenizer.encode(text, addSpecialTokens);
  }

  decode(ids: number[], skipSpecialTokens = true): string {
    return this.tokenizer.decode(ids, skipSpecialTokens);
  }

  applyChatTemplate(messages: ChatMessage[], options?: ChatTemplateOptions): string {
    return this.tokenizer.applyChatTemplate(messages, options);
  }
}
