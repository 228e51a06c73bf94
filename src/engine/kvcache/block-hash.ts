// Content hashes of full KV blocks for prefix caching. A block's hash covers its parent's hash and
// its own token ids, so equal hashes mean equal whole prefixes (vLLM hash_block_tokens). SHA-256
// makes accidental collisions (which would serve wrong KV) practically impossible.

import { createHash } from "node:crypto";

export function hashBlockTokens(parentHash: string | null, tokenIds: readonly number[]): string {
  const h = createHash("sha256");
  h.update(parentHash ?? "root");
  h.update(Int32Array.from(tokenIds));
  return h.digest("base64");
}

/**
 * Extends `hashes` (the hashes of the first hashes.length full blocks of `tokenIds`) with the hashes
 * of any further full blocks. Incremental so that decoding hashes each block once.
 */
export function extendBlockHashes(hashes: string[], tokenIds: readonly number[], blockSize: number): void {
  const numFull = Math.floor(tokenIds.length / blockSize);
  for (let i = hashes.length; i < numFull; i++) {
    const parent = i === 0 ? null : hashes[i - 1];
    hashes.push(hashBlockTokens(parent, tokenIds.slice(i * blockSize, (i + 1) * blockSize)));
  }
}
