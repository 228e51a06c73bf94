import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { extendBlockHashes, hashBlockTokens } from "./block-hash.ts";
import { BlockPool } from "./block-pool.ts";

describe("BlockPool", () => {
  it("hands out blocks in free-queue order and keeps free + used = total", () => {
    const pool = new BlockPool({ numBlocks: 4, enablePrefixCaching: true });
    const a = pool.getNewBlocks(3)!;
    assert.deepEqual(
      a.map((b) => b.blockId),
      [0, 1, 2],
    );
    assert.equal(pool.numFreeBlocks, 1);
    assert.equal(pool.usage, 0.75);
    assert.equal(pool.getNewBlocks(2), null, "asking for more than is free gives null, not a partial list");
    assert.equal(pool.numFreeBlocks, 1);
    pool.checkInvariants();
    pool.free([a[2], a[1], a[0]]);
    assert.deepEqual(pool.freeBlockIds(), [3, 2, 1, 0]);
    pool.checkInvariants();
  });

  it("keeps a freed block's hash until the block is reused (LRU eviction)", () => {
    const pool = new BlockPool({ numBlocks: 2, enablePrefixCaching: true });
    const [b0, b1] = pool.getNewBlocks(2)!;
    pool.cacheBlock(b0, "h0");
    pool.cacheBlock(b1, "h1");
    pool.free([b0, b1]); // b0 evicted first
    assert.equal(pool.getCachedBlock("h0"), b0);
    const [reused] = pool.getNewBlocks(1)!;
    assert.equal(reused, b0);
    assert.equal(pool.getCachedBlock("h0"), null, "reusing a block evicts its hash");
    assert.equal(pool.getCachedBlock("h1"), b1);
    pool.checkInvariants();
  });

  it("touch takes a free cached block out of the free queue and counts references", () => {
    const pool = new BlockPool({ numBlocks: 3, enablePrefixCaching: true });
    const [b0] = pool.getNewBlocks(1)!;
    pool.cacheBlock(b0, "h");
    pool.free([b0]);
    assert.equal(pool.numFreeBlocks, 3);
    pool.touch([b0]);
    pool.touch([b0]);
    assert.equal(b0.refCnt, 2);
    assert.equal(pool.numFreeBlocks, 2);
    pool.free([b0]);
    assert.equal(pool.numFreeBlocks, 2, "still referenced once");
    pool.free([b0]);
    assert.equal(pool.numFreeBlocks, 3);
    assert.throws(() => pool.free([b0]), /freed more often/);
    pool.checkInvariants();
  });

  it("does not register hashes when prefix caching is off, and keeps the first block of a duplicate hash", () => {
    const off = new BlockPool({ numBlocks: 2, enablePrefixCaching: false });
    const [x] = off.getNewBlocks(1)!;
    off.cacheBlock(x, "h");
    assert.equal(off.getCachedBlock("h"), null);
    const on = new BlockPool({ numBlocks: 2, enablePrefixCaching: true });
    const [a, b] = on.getNewBlocks(2)!;
    on.cacheBlock(a, "h");
    on.cacheBlock(b, "h");
    assert.equal(on.getCachedBlock("h"), a);
    assert.equal(b.blockHash, null);
    on.checkInvariants();
  });

  it("checkInvariants catches a corrupted reference count", () => {
    const pool = new BlockPool({ numBlocks: 2, enablePrefixCaching: true });
    const [b] = pool.getNewBlocks(1)!;
    b.refCnt = 0; // a bug elsewhere: unreferenced but not in the free queue
    assert.throws(() => pool.checkInvariants(), /unreferenced but not free/);
  });
});

describe("block hashes", () => {
  it("chain over parents: the same block after different prefixes hashes differently", () => {
    const h1: string[] = [];
    extendBlockHashes(h1, [1, 2, 3, 4, 5], 2);
    assert.equal(h1.length, 2, "only full blocks are hashed");
    const h2: string[] = [];
    extendBlockHashes(h2, [9, 9, 3, 4], 2);
    assert.notEqual(h1[1], h2[1]);
    assert.equal(h1[0], hashBlockTokens(null, [1, 2]));
    assert.equal(h1[1], hashBlockTokens(h1[0], [3, 4]));
    extendBlockHashes(h1, [1, 2, 3, 4, 5, 6], 2);
    assert.equal(h1.length, 3);
  });
});
