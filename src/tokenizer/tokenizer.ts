// The model's tokenizer: Hugging Face tokenizer.json through @huggingface/tokenizers, plus what the
// engine needs around it: special-token ids, eos ids (tokenizer_config, generation_config.json and
// config.json together, as vLLM does) and the chat template. Decoding never applies
// clean_up_tokenization_spaces, so incremental decoding of prefixes stays consistent.

import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import type { ChatMessage } from "../engine/protocol.ts";
import { ConfigError, ValidationError } from "../errors.ts";
import { ChatTemplate, type ChatTemplateOptions } from "./chat-template.ts";

type Json = Record<string, unknown>;

export interface TokenizerFiles {
  tokenizerJson: Json;
  tokenizerConfig?: Json;
  generationConfig?: Json;
  modelConfig?: Json;
  /** Contents of chat_template.jinja, which newer checkpoints ship instead of the config key. */
  chatTemplateFile?: string;
}

export class HfTokenizer {
  private readonly tok: Tokenizer;
  private readonly specialIds: Set<number>;
  readonly eosTokenIds: number[];
  readonly bosTokenId: number | null;
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  readonly vocabSize: number;
  readonly chatTemplate: ChatTemplate | null;
  /** The "tool_use" entry of a named-template list, used when the request has tools. */
  private readonly toolUseTemplate: ChatTemplate | null;

  constructor(files: TokenizerFiles) {
    const config = files.tokenizerConfig ?? {};
    this.tok = new Tokenizer(files.tokenizerJson, config);
    this.vocabSize = this.tok.get_vocab(true).size;
    this.specialIds = new Set(
      [...this.tok.get_added_tokens_decoder()].filter(([, t]) => t.special).map(([id]) => id),
    );
    this.bosToken = tokenContent(config.bos_token);
    this.eosToken = tokenContent(config.eos_token);
    this.bosTokenId = this.idOf(this.bosToken) ?? numOrNull(files.generationConfig?.bos_token_id);
    const eos = new Set<number>();
    const fromConfig = this.idOf(this.eosToken);
    if (fromConfig !== null) eos.add(fromConfig);
    for (const src of [files.generationConfig, files.modelConfig]) {
      for (const id of idList(src?.eos_token_id)) eos.add(id);
    }
    this.eosTokenIds = [...eos];

    const specialTokens: Record<string, string> = {};
    for (const key of [
      "bos_token",
      "eos_token",
      "unk_token",
      "pad_token",
      "sep_token",
      "cls_token",
      "mask_token",
    ]) {
      const v = tokenContent(config[key]);
      if (v !== null) specialTokens[key] = v;
    }
    const source = files.chatTemplateFile ?? pickTemplate(config.chat_template, "default");
    this.chatTemplate = source === null ? null : new ChatTemplate(source, specialTokens);
    const toolSource = pickTemplate(config.chat_template, "tool_use");
    this.toolUseTemplate =
      Array.isArray(config.chat_template) && toolSource !== null
        ? new ChatTemplate(toolSource, specialTokens)
        : null;
  }

  /** Loads tokenizer.json (required) and the optional configs next to it. */
  static fromDir(modelDir: string): HfTokenizer {
    const path = join(modelDir, "tokenizer.json");
    if (!existsSync(path)) {
      throw new ConfigError([`No tokenizer.json in ${modelDir}: a Hugging Face fast tokenizer is required`]);
    }
    return new HfTokenizer({
      tokenizerJson: readJson(path),
      tokenizerConfig: readJsonIfExists(join(modelDir, "tokenizer_config.json")),
      generationConfig: readJsonIfExists(join(modelDir, "generation_config.json")),
      modelConfig: readJsonIfExists(join(modelDir, "config.json")),
      chatTemplateFile: existsSync(join(modelDir, "chat_template.jinja"))
        ? readFileSync(join(modelDir, "chat_template.jinja"), "utf8")
        : undefined,
    });
  }

  encode(text: string, addSpecialTokens = true): number[] {
    return this.tok.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  decode(ids: readonly number[], skipSpecialTokens = false): string {
    if (ids.length === 0) return ""; // the library throws on an empty list
    return this.tok.decode(ids as number[], {
      skip_special_tokens: skipSpecialTokens,
      clean_up_tokenization_spaces: false,
    });
  }

  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }

  /** The vocabulary string of a token (e.g. "Ġthe"), or null for an unknown id. */
  idToToken(id: number): string | null {
    return this.tok.id_to_token(id) ?? null;
  }

  tokenToId(token: string): number | null {
    return this.tok.token_to_id(token) ?? null;
  }

  /** Renders messages with the chat template; throws ValidationError when the model has none. */
  applyChatTemplate(messages: ChatMessage[], opts?: ChatTemplateOptions): string {
    const template = (opts?.tools?.length ? this.toolUseTemplate : null) ?? this.chatTemplate;
    if (template === null) {
      throw new ValidationError(
        "This model has no chat template (tokenizer_config.json has no chat_template), so `messages` cannot be used",
        "messages",
      );
    }
    return template.render(messages, opts);
  }

  private idOf(token: string | null): number | null {
    return token === null ? null : (this.tok.token_to_id(token) ?? null);
  }
}

function tokenContent(v: unknown): string | null {
  if (typeof v === "string") return v;
  if (v !== null && typeof v === "object" && typeof (v as Json).content === "string")
    return (v as Json).content as string;
  return null;
}

function numOrNull(v: unknown): number | null {
  return typeof v === "number" && Number.isInteger(v) ? v : null;
}

function idList(v: unknown): number[] {
  if (typeof v === "number" && Number.isInteger(v)) return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === "number" && Number.isInteger(x));
  return [];
}

/** tokenizer_config's chat_template: a string, or a list of {name, template} (take `name`, else the first). */
function pickTemplate(v: unknown, name: string): string | null {
  if (typeof v === "string") return v;
  if (Array.isArray(v)) {
    const named = v as Array<{ name?: string; template?: string }>;
    const t = named.find((x) => x.name === name) ?? (name === "default" ? named[0] : undefined);
    return typeof t?.template === "string" ? t.template : null;
  }
  return null;
}

function readJson(path: string): Json {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as Json;
  } catch (err) {
    throw new ConfigError([`Cannot read ${path}: ${err instanceof Error ? err.message : String(err)}`]);
  }
}

function readJsonIfExists(path: string): Json | undefined {
  return existsSync(path) ? readJson(path) : undefined;
}
