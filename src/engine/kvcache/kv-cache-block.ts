// One fixed-size KV cache block as the engine sees it (the executor holds the actual tensors).
// refCnt counts the requests whose block table holds the block; blockHash is set once the block is
// full and registered in the prefix cache, and cleared when the block is evicted for reuse.

export interface KVCacheBlock {
  readonly blockId: number;
  refCnt: number;
  blockHash: string | null;
  // Free-queue links; only FreeBlockQueue touches these.
  prevFree: KVCacheBlock | null;
  nextFree: KVCacheBlock | null;
  inFreeQueue: boolean;
}

export function createBlock(blockId: number): KVCacheBlock {
  return { blockId, refCnt: 0, blockHash: null, prevFree: null, nextFree: null, inFreeQueue: false };
}
