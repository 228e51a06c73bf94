// Block tables per request on top of the BlockPool: finds prefix-cache hits, allocates slots for the
// tokens scheduled in a step, registers full blocks in the prefix cache, and frees a request's blocks.
// Only blocks whose KV was computed in an earlier step are registered, so a hit never points at KV an
// executor has not written yet. allocateSlots returns null when there is no room (the scheduler then
// preempts); it never partially allocates.

import { extendBlockHashes } from "./block-hash.ts";
import { BlockPool } from "./block-pool.ts";
import type { KVCacheBlock } from "./kv-cache-block.ts";

/** What the manager needs to know about a request. */
export interface KVRequest {
  readonly reqId: string;
  readonly allTokenIds: readonly number[];
  readonly numComputedTokens: number;
}

export interface ComputedBlocks {
  blocks: KVCacheBlock[];
  numComputedTokens: number;
}

export class KVCacheManager {
  readonly blockSize: number;
  readonly pool: BlockPool;
  private readonly reqToBlocks = new Map<string, KVCacheBlock[]>();
  private readonly reqToHashes = new Map<string, string[]>();
  /** How many leading blocks of each request are already registered in the prefix cache. */
  private readonly reqNumCachedBlocks = new Map<string, number>();

  constructor(opts: { numBlocks: number; blockSize: number; enablePrefixCaching: boolean }) {
    if (!Number.isInteger(opts.blockSize) || opts.blockSize < 1) {
      throw new Error(`blockSize must be a positive integer, got ${opts.blockSize}`);
    }
    this.blockSize = opts.blockSize;
    this.pool = new BlockPool(opts);
  }

  get usage(): number {
    return this.pool.usage;
  }

  /**
   * The longest run of cached full blocks at the start of the request's tokens. At least one token is
   * always left to compute, because the executor needs a forward pass to produce logits.
   */
  getComputedBlocks(req: KVRequest): ComputedBlocks {
    if (!this.pool.enablePrefixCaching) return { blocks: [], numComputedTokens: 0 };
    const hashes = this.hashesOf(req);
    const maxBlocks = Math.floor((req.allTokenIds.length - 1) / this.blockSize);
    const blocks: KVCacheBlock[] = [];
    for (let i = 0; i < Math.min(maxBlocks, hashes.length); i++) {
      const b = this.pool.getCachedBlock(hashes[i]);
      if (b === null) break;
      blocks.push(b);
    }
    return { blocks, numComputedTokens: blocks.length * this.blockSize };
  }

  /**
   * Makes room for numNewTokens more tokens after the request's computed ones (plus newComputedBlocks,
   * a prefix-cache hit found by getComputedBlocks). Returns the blocks appended to its table, or null.
   */
  allocateSlots(
    req: KVRequest,
    numNewTokens: number,
    newComputedBlocks: readonly KVCacheBlock[] = [],
  ): KVCacheBlock[] | null {
    const table = this.reqToBlocks.get(req.reqId) ?? [];
    const numComputed = req.numComputedTokens + newComputedBlocks.length * this.blockSize;
    const numRequired = Math.ceil((numComputed + numNewTokens) / this.blockSize);
    const numNew = Math.max(0, numRequired - table.length - newComputedBlocks.length);
    // Hit blocks that are free right now leave the free queue when touched, so they cost room too.
    let numEvictableHits = 0;
    for (const b of newComputedBlocks) if (b.refCnt === 0) numEvictableHits++;
    if (numNew > this.pool.numFreeBlocks - numEvictableHits) return null;

    this.pool.touch(newComputedBlocks);
    const fresh = this.pool.getNewBlocks(numNew)!;
    const added = [...newComputedBlocks, ...fresh];
    table.push(...added);
    this.reqToBlocks.set(req.reqId, table);
    if (newComputedBlocks.length > 0) {
      this.reqNumCachedBlocks.set(req.reqId, table.length - fresh.length);
    }
    this.cacheFullBlocks(req, numComputed);
    return added;
  }

  /** Releases the request's blocks (tail first into the free queue, so prefixes outlive suffixes). */
  free(req: KVRequest): void {
    const table = this.reqToBlocks.get(req.reqId);
    if (table !== undefined) {
      this.cacheFullBlocks(req, req.numComputedTokens);
      this.pool.free([...table].reverse());
    }
    this.reqToBlocks.delete(req.reqId);
    this.reqToHashes.delete(req.reqId);
    this.reqNumCachedBlocks.delete(req.reqId);
  }

  getBlockIds(reqId: string): number[] {
    return (this.reqToBlocks.get(reqId) ?? []).map((b) => b.blockId);
  }

  numBlocksOf(reqId: string): number {
    return this.reqToBlocks.get(reqId)?.length ?? 0;
  }

  /** Registers the request's full blocks among its first numTokens tokens (their KV is computed). */
  private cacheFullBlocks(req: KVRequest, numTokens: number): void {
    if (!this.pool.enablePrefixCaching) return;
    const table = this.reqToBlocks.get(req.reqId);
    if (table === undefined) return;
    // Computed positions may run ahead of the known tokens (a pending sample): only known ones hash.
    const known = Math.min(numTokens, req.allTokenIds.length);
    const numFull = Math.min(Math.floor(known / this.blockSize), table.length);
    const start = this.reqNumCachedBlocks.get(req.reqId) ?? 0;
    if (numFull <= start) return;
    const hashes = this.hashesOf(req);
    for (let i = start; i < numFull; i++) this.pool.cacheBlock(table[i], hashes[i]);
    this.reqNumCachedBlocks.set(req.reqId, numFull);
  }

  private hashesOf(req: KVRequest): string[] {
    let hashes = this.reqToHashes.get(req.reqId);
    if (hashes === undefined) {
      hashes = [];
      this.reqToHashes.set(req.reqId, hashes);
    }
    extendBlockHashes(hashes, req.allTokenIds, this.blockSize);
    return hashes;
  }
}
