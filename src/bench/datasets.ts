// The prompts a benchmark sends. `random` follows vLLM's RandomDataset: per-request lengths uniform in
// [floor(len·(1−r)), ceil(len·(1+r))], ids consecutive from a random offset (skipping special tokens),
// sent as ids or as text decoded and re-encoded until it holds the target count. `jsonl` reads
// {"prompt", "output_len"?, "prompt_len"?} lines. Every BenchRequest has a known promptLen.

import { readFileSync } from "node:fs";
import { BenchError } from "./errors.ts";
import type { Rng } from "./random.ts";

export interface BenchRequest {
  prompt: string | number[];
  promptLen: number;
  outputLen: number;
}

/** The few tokenizer operations prompt building needs (HfTokenizer satisfies it via prompt-tokenizer.ts). */
export interface PromptTokenizer {
  vocabSize: number;
  isSpecial(id: number): boolean;
  encode(text: string): number[];
  decode(ids: readonly number[]): string;
}

export interface RandomOptions {
  numPrompts: number;
  inputLen: number;
  outputLen: number;
  rangeRatio: number;
  /** "ids" sends token ids; "text" needs a tokenizer. */
  promptKind: "ids" | "text";
  tokenizer: PromptTokenizer | null;
  /** Used for id prompts when no tokenizer is given. */
  vocabSize: number | null;
}

export function lengthRange(len: number, ratio: number, min: number): [number, number] {
  return [Math.max(min, Math.floor(len * (1 - ratio))), Math.max(min, Math.ceil(len * (1 + ratio)))];
}

export function randomDataset(o: RandomOptions, rng: Rng): BenchRequest[] {
  if (o.promptKind === "text" && o.tokenizer === null) {
    throw new BenchError("text prompts need a tokenizer", "--tokenizer");
  }
  const allowed = allowedIds(o);
  const [inLo, inHi] = lengthRange(o.inputLen, o.rangeRatio, 1);
  const [outLo, outHi] = lengthRange(o.outputLen, o.rangeRatio, 1);
  const out: BenchRequest[] = [];
  for (let i = 0; i < o.numPrompts; i++) {
    const inputLen = rng.int(inLo, inHi);
    const outputLen = rng.int(outLo, outHi);
    const offset = rng.int(0, allowed.length - 1);
    const ids = Array.from({ length: inputLen }, (_, j) => allowed[(offset + i + j) % allowed.length]);
    if (o.promptKind === "ids") {
      out.push({ prompt: ids, promptLen: inputLen, outputLen });
    } else {
      const tok = o.tokenizer as PromptTokenizer;
      const { text, len } = textOfLength(tok, ids, inputLen, allowed, offset + i + inputLen);
      out.push({ prompt: text, promptLen: len, outputLen });
    }
  }
  return out;
}

function allowedIds(o: RandomOptions): number[] {
  const v = o.tokenizer?.vocabSize ?? o.vocabSize;
  if (v === null || v === undefined) {
    throw new BenchError("random token-id prompts need --tokenizer or --random-vocab-size", "--tokenizer");
  }
  const ids: number[] = [];
  for (let id = 0; id < v; id++) if (!o.tokenizer?.isSpecial(id)) ids.push(id);
  if (ids.length === 0) throw new BenchError("the tokenizer has no non-special tokens", "--tokenizer");
  return ids;
}

/**
 * Decoding then re-encoding rarely round-trips exactly (merges across the joins), so trim or extend
 * the ids until the text encodes to the target length; after a few tries the last count is used as is.
 */
function textOfLength(
  tok: PromptTokenizer,
  ids: number[],
  target: number,
  allowed: number[],
  nextIndex: number,
): { text: string; len: number } {
  let cur = ids;
  let text = tok.decode(cur);
  let len = tok.encode(text).length;
  let extra = nextIndex;
  for (let tries = 0; tries < 10 && len !== target; tries++) {
    if (len > target) cur = cur.slice(0, Math.max(1, cur.length - (len - target)));
    else for (let k = 0; k < target - len; k++) cur = [...cur, allowed[extra++ % allowed.length]];
    text = tok.decode(cur);
    len = tok.encode(text).length;
  }
  return { text, len };
}

export interface JsonlOptions {
  path: string;
  numPrompts: number;
  /** Output length for lines without output_len; null makes output_len required. */
  defaultOutputLen: number | null;
  tokenizer: PromptTokenizer | null;
}

/** Reads the file; takes lines in order, cycling when numPrompts exceeds the line count. */
export function jsonlDataset(o: JsonlOptions): BenchRequest[] {
  let text: string;
  try {
    text = readFileSync(o.path, "utf8");
  } catch (err) {
    throw new BenchError(`cannot read ${o.path}: ${(err as Error).message}`, "--dataset-path");
  }
  const rows = text
    .split("\n")
    .map((l, i) => ({ l: l.trim(), n: i + 1 }))
    .filter((r) => r.l !== "")
    .map((r) => parseLine(r.l, `${o.path}:${r.n}`, o));
  if (rows.length === 0) throw new BenchError(`${o.path} holds no prompts`, "--dataset-path");
  return Array.from({ length: o.numPrompts }, (_, i) => rows[i % rows.length]);
}

function parseLine(line: string, where: string, o: JsonlOptions): BenchRequest {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    throw new BenchError(`${where}: not JSON`, "--dataset-path");
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new BenchError(`${where}: each line must be a JSON object`, "--dataset-path");
  }
  const r = v as Record<string, unknown>;
  const prompt = r.prompt;
  const isIds = Array.isArray(prompt) && prompt.every((x) => Number.isInteger(x) && (x as number) >= 0);
  if (!(typeof prompt === "string" && prompt !== "") && !(isIds && (prompt as number[]).length > 0)) {
    throw new BenchError(`${where}: "prompt" must be a non-empty string or token-id array`, "--dataset-path");
  }
  const outputLen = posInt(r.output_len) ?? o.defaultOutputLen;
  if (outputLen === null) {
    throw new BenchError(
      `${where}: "output_len" must be a positive integer (or pass --jsonl-output-len)`,
      "--dataset-path",
    );
  }
  let promptLen = posInt(r.prompt_len);
  if (promptLen === null) {
    if (isIds) promptLen = (prompt as number[]).length;
    else if (o.tokenizer) promptLen = o.tokenizer.encode(prompt as string).length;
    else {
      throw new BenchError(
        `${where}: no "prompt_len"; pass --tokenizer to count text prompts`,
        "--tokenizer",
      );
    }
  }
  return { prompt: prompt as string | number[], promptLen, outputLen };
}

function posInt(v: unknown): number | null {
  return typeof v === "number" && Number.isInteger(v) && v > 0 ? v : null;
}
