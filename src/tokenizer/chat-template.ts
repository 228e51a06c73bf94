// Renders a Hugging Face chat template (Jinja) with @huggingface/jinja, passing what transformers'
// apply_chat_template passes: messages, tools, add_generation_prompt, the special tokens (bos_token,
// eos_token, ...); raise_exception and strftime_now come with the library. Render errors become
// ValidationErrors naming `messages`, since it is the request that the template rejected.

import { Template } from "@huggingface/jinja";
import type { ChatMessage } from "../engine/protocol.ts";
import { ValidationError } from "../errors.ts";

export interface ChatTemplateOptions {
  tools?: unknown[];
  addGenerationPrompt?: boolean;
  /** Extra template variables (e.g. documents, enable_thinking). */
  extra?: Record<string, unknown>;
}

export class ChatTemplate {
  readonly source: string;
  private readonly template: Template | null;
  private readonly parseError: string | null;
  private readonly specialTokens: Record<string, string>;

  constructor(source: string, specialTokens: Record<string, string>) {
    this.source = source;
    this.specialTokens = specialTokens;
    // A broken template must not stop the model from serving plain prompts: report it on use.
    let template: Template | null = null;
    let parseError: string | null = null;
    try {
      template = new Template(source);
    } catch (err) {
      parseError = err instanceof Error ? err.message : String(err);
    }
    this.template = template;
    this.parseError = parseError;
  }

  render(messages: ChatMessage[], opts: ChatTemplateOptions = {}): string {
    if (this.template === null) {
      throw new ValidationError(`The model's chat template cannot be parsed: ${this.parseError}`, "messages");
    }
    if (!Array.isArray(messages) || messages.length === 0) {
      throw new ValidationError("`messages` must be a non-empty list", "messages");
    }
    try {
      return this.template.render({
        ...this.specialTokens,
        ...opts.extra,
        messages,
        tools: opts.tools ?? null,
        add_generation_prompt: opts.addGenerationPrompt ?? true,
      });
    } catch (err) {
      // The library's own raise_exception throws a plain Error carrying the template's message.
      if (err instanceof Error && err.constructor === Error)
        throw new ValidationError(err.message, "messages");
      const detail = err instanceof Error ? err.message : String(err);
      throw new ValidationError(`The chat template failed on these messages: ${detail}`, "messages");
    }
  }
}
