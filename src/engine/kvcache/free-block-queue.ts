// The queue of free KV blocks, in eviction order: the head is evicted (reused) first.
// A doubly linked list threaded through the blocks themselves, so popping the head, appending and
// removing a block from the middle (a prefix-cache hit on a free block) are all O(1) (vLLM v1
// FreeKVCacheBlockQueue). Invariant: a block is in the queue exactly when its refCnt is 0.

import type { KVCacheBlock } from "./kv-cache-block.ts";

export class FreeBlockQueue {
  private head: KVCacheBlock | null = null;
  private tail: KVCacheBlock | null = null;
  private count = 0;

  constructor(blocks: readonly KVCacheBlock[]) {
    for (const b of blocks) this.append(b);
  }

  get length(): number {
    return this.count;
  }

  /** Removes and returns the block to evict first, or null when the queue is empty. */
  popLeft(): KVCacheBlock | null {
    const b = this.head;
    if (b === null) return null;
    this.remove(b);
    return b;
  }

  append(block: KVCacheBlock): void {
    if (block.inFreeQueue) throw new Error(`block ${block.blockId} is already in the free queue`);
    block.prevFree = this.tail;
    block.nextFree = null;
    if (this.tail === null) this.head = block;
    else this.tail.nextFree = block;
    this.tail = block;
    block.inFreeQueue = true;
    this.count++;
  }

  remove(block: KVCacheBlock): void {
    if (!block.inFreeQueue) throw new Error(`block ${block.blockId} is not in the free queue`);
    if (block.prevFree === null) this.head = block.nextFree;
    else block.prevFree.nextFree = block.nextFree;
    if (block.nextFree === null) this.tail = block.prevFree;
    else block.nextFree.prevFree = block.prevFree;
    block.prevFree = null;
    block.nextFree = null;
    block.inFreeQueue = false;
    this.count--;
  }

  /** Block ids from head to tail (tests and invariant checks). */
  ids(): number[] {
    const out: number[] = [];
    for (let b = this.head; b !== null; b = b.nextFree) out.push(b.blockId);
    return out;
  }
}
