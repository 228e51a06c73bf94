// Paths of committed test fixtures and a shared tokenizer instance for engine/tokenizer tests.
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { HfTokenizer } from "../../src/tokenizer/tokenizer.ts";

const here = dirname(fileURLToPath(import.meta.url));
/** Byte-level BPE fixture written by test/fixtures/tokenizers/make-byte-bpe.mjs. */
export const BYTE_BPE_DIR = join(here, "..", "fixtures", "tokenizers", "byte-bpe");
export const REPO_ROOT = join(here, "..", "..");

let cached: HfTokenizer | null = null;
export function byteBpe(): HfTokenizer {
  cached ??= HfTokenizer.fromDir(BYTE_BPE_DIR);
  return cached;
}
