// All KV blocks of one executor: allocation, reference counts, and the prefix cache (hash -> block).
// Free blocks keep their hash until they are reused, so a freed prefix can still be hit (LRU: the
// free queue is in eviction order). Invariant (checkInvariants): free + used = total, and a block is
// in the free queue exactly when its refCnt is 0.

import { FreeBlockQueue } from "./free-block-queue.ts";
import { createBlock, type KVCacheBlock } from "./kv-cache-block.ts";

export class BlockPool {
  readonly numBlocks: number;
  readonly enablePrefixCaching: boolean;
  private readonly blocks: KVCacheBlock[];
  private readonly freeQueue: FreeBlockQueue;
  private readonly hashToBlock = new Map<string, KVCacheBlock>();

  constructor(opts: { numBlocks: number; enablePrefixCaching: boolean }) {
    if (!Number.isInteger(opts.numBlocks) || opts.numBlocks < 1) {
      throw new Error(`numBlocks must be a positive integer, got ${opts.numBlocks}`);
    }
    this.numBlocks = opts.numBlocks;
    this.enablePrefixCaching = opts.enablePrefixCaching;
    this.blocks = Array.from({ length: opts.numBlocks }, (_, i) => createBlock(i));
    this.freeQueue = new FreeBlockQueue(this.blocks);
  }

  get numFreeBlocks(): number {
    return this.freeQueue.length;
  }

  /** Fraction of blocks held by requests (cached-but-free blocks count as free). */
  get usage(): number {
    return 1 - this.freeQueue.length / this.numBlocks;
  }

  block(blockId: number): KVCacheBlock {
    return this.blocks[blockId];
  }

  /** The cached block holding this full-block hash, or null. */
  getCachedBlock(blockHash: string): KVCacheBlock | null {
    return this.hashToBlock.get(blockHash) ?? null;
  }

  /** Takes n blocks from the head of the free queue (evicting their cached hashes); null if too few. */
  getNewBlocks(n: number): KVCacheBlock[] | null {
    if (n > this.freeQueue.length) return null;
    const out: KVCacheBlock[] = [];
    for (let i = 0; i < n; i++) {
      const b = this.freeQueue.popLeft()!;
      this.evict(b);
      b.refCnt = 1;
      out.push(b);
    }
    return out;
  }

  /** Adds a reference to blocks found in the prefix cache, taking free ones out of the free queue. */
  touch(blocks: readonly KVCacheBlock[]): void {
    for (const b of blocks) {
      if (b.refCnt === 0) this.freeQueue.remove(b);
      b.refCnt++;
    }
  }

  /**
   * Drops one reference from each block, in the given order; blocks reaching 0 join the tail of the
   * free queue, so the first ones given are evicted first.
   */
  free(blocksInEvictionOrder: readonly KVCacheBlock[]): void {
    for (const b of blocksInEvictionOrder) {
      if (b.refCnt <= 0) throw new Error(`block ${b.blockId} freed more often than allocated`);
      b.refCnt--;
      if (b.refCnt === 0) this.freeQueue.append(b);
    }
  }

  /** Registers a full, computed block under its hash. A hash already cached keeps its first block. */
  cacheBlock(block: KVCacheBlock, blockHash: string): void {
    if (typeof blockHash !== "string") throw new Error(`block ${block.blockId} cached without a hash`);
    if (!this.enablePrefixCaching || block.blockHash !== null) return;
    if (this.hashToBlock.has(blockHash)) return;
    block.blockHash = blockHash;
    this.hashToBlock.set(blockHash, block);
  }

  /** Forgets every cached hash (after the executor's cache was re-created). */
  resetPrefixCache(): void {
    for (const b of this.hashToBlock.values()) b.blockHash = null;
    this.hashToBlock.clear();
  }

  /** Throws when the bookkeeping is inconsistent. Cheap enough for tests after every step. */
  checkInvariants(): void {
    let used = 0;
    let free = 0;
    for (const b of this.blocks) {
      if (b.refCnt < 0) throw new Error(`block ${b.blockId} has refCnt ${b.refCnt}`);
      if (b.refCnt === 0 && !b.inFreeQueue)
        throw new Error(`block ${b.blockId} is unreferenced but not free`);
      if (b.refCnt > 0 && b.inFreeQueue)
        throw new Error(`block ${b.blockId} is referenced but in the free queue`);
      if (b.refCnt > 0) used++;
      else free++;
      if (b.blockHash !== null && this.hashToBlock.get(b.blockHash) !== b) {
        throw new Error(`block ${b.blockId} has a hash that does not map back to it`);
      }
    }
    if (free !== this.freeQueue.length || this.freeQueue.ids().length !== free) {
      throw new Error(`free queue holds ${this.freeQueue.length} blocks, ${free} are free`);
    }
    if (free + used !== this.numBlocks)
      throw new Error(`free ${free} + used ${used} != total ${this.numBlocks}`);
  }

  private evict(b: KVCacheBlock): void {
    if (b.blockHash === null) return;
    this.hashToBlock.delete(b.blockHash);
    b.blockHash = null;
  }

  /** Free-queue order, head first (tests). */
  freeBlockIds(): number[] {
    return this.freeQueue.ids();
  }
}
