import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { KVCacheManager, type KVRequest } from "./kv-cache-manager.ts";

function req(
  reqId: string,
  tokens: number[],
  numComputedTokens = 0,
): KVRequest & { numComputedTokens: number } {
  return { reqId, allTokenIds: tokens, numComputedTokens };
}
const range = (n: number, from = 0) => Array.from({ length: n }, (_, i) => from + i);

describe("KVCacheManager", () => {
  it("allocates ceil(tokens / blockSize) blocks and grows the table as tokens arrive", () => {
    const kv = new KVCacheManager({ numBlocks: 10, blockSize: 4, enablePrefixCaching: true });
    const r = req("a", range(10));
    assert.equal(kv.allocateSlots(r, 10)!.length, 3);
    r.numComputedTokens = 10;
    (r.allTokenIds as number[]).push(100);
    assert.equal(kv.allocateSlots(r, 1)!.length, 0, "token 11 fits in block 3");
    r.numComputedTokens = 11;
    (r.allTokenIds as number[]).push(101);
    assert.equal(kv.allocateSlots(r, 1)!.length, 0);
    r.numComputedTokens = 12;
    (r.allTokenIds as number[]).push(102);
    assert.equal(kv.allocateSlots(r, 1)!.length, 1, "token 13 needs a 4th block");
    assert.equal(kv.getBlockIds("a").length, 4);
    kv.pool.checkInvariants();
  });

  it("returns null without allocating anything when the request does not fit", () => {
    const kv = new KVCacheManager({ numBlocks: 3, blockSize: 4, enablePrefixCaching: true });
    assert.notEqual(kv.allocateSlots(req("a", range(8)), 8), null);
    assert.equal(kv.allocateSlots(req("b", range(8)), 8), null);
    assert.equal(kv.pool.numFreeBlocks, 1);
    assert.equal(kv.numBlocksOf("b"), 0);
    kv.pool.checkInvariants();
  });

  it("finds a prefix hit only for blocks computed in an earlier step, and shares them", () => {
    const kv = new KVCacheManager({ numBlocks: 10, blockSize: 4, enablePrefixCaching: true });
    const prompt = range(10, 50);
    const a = req("a", [...prompt]);
    kv.allocateSlots(a, 10);
    const early = kv.getComputedBlocks(req("b", [...prompt]));
    assert.equal(early.numComputedTokens, 0, "a's KV is not computed yet, so no hit");
    a.numComputedTokens = 10;
    (a.allTokenIds as number[]).push(7);
    kv.allocateSlots(a, 1); // next step: a's first 2 blocks are now registered
    const b = req("b", [...prompt, 99]);
    const hit = kv.getComputedBlocks(b);
    assert.equal(hit.numComputedTokens, 8);
    assert.deepEqual(
      hit.blocks.map((x) => x.blockId),
      kv.getBlockIds("a").slice(0, 2),
    );
    const added = kv.allocateSlots(b, 3, hit.blocks)!;
    assert.equal(added.length, 3, "2 shared blocks + 1 fresh");
    assert.equal(hit.blocks[0].refCnt, 2);
    kv.free(a);
    assert.equal(hit.blocks[0].refCnt, 1, "b still holds the shared prefix");
    kv.pool.checkInvariants();
  });

  it("leaves at least one token to compute on a full-prompt hit", () => {
    const kv = new KVCacheManager({ numBlocks: 10, blockSize: 4, enablePrefixCaching: true });
    const a = req("a", range(8), 0);
    kv.allocateSlots(a, 8);
    a.numComputedTokens = 8;
    kv.free(a); // registers both full blocks on the way out
    const hit = kv.getComputedBlocks(req("b", range(8)));
    assert.equal(hit.numComputedTokens, 4, "8 tokens cached, but the last block is recomputed");
    const hit9 = kv.getComputedBlocks(req("c", range(9)));
    assert.equal(hit9.numComputedTokens, 8);
  });

  it("counts free cached hit blocks against the room needed", () => {
    const kv = new KVCacheManager({ numBlocks: 3, blockSize: 2, enablePrefixCaching: true });
    const a = req("a", [1, 2, 3, 4, 5], 0);
    kv.allocateSlots(a, 5);
    a.numComputedTokens = 5;
    kv.free(a);
    assert.equal(kv.pool.numFreeBlocks, 3);
    const b = req("b", [1, 2, 3, 4, 9, 9, 9]);
    const hit = kv.getComputedBlocks(b);
    assert.equal(hit.blocks.length, 2);
    // b needs 4 blocks: 2 hits (both currently free) + 2 fresh, but only 3 blocks exist.
    assert.equal(kv.allocateSlots(b, 3, hit.blocks), null);
    assert.equal(hit.blocks[0].refCnt, 0, "a failed allocation touches nothing");
    kv.pool.checkInvariants();
  });

  it("free returns every block and prefix caching off never hits", () => {
    const kv = new KVCacheManager({ numBlocks: 4, blockSize: 2, enablePrefixCaching: false });
    const a = req("a", range(6));
    kv.allocateSlots(a, 6);
    a.numComputedTokens = 6;
    kv.free(a);
    assert.equal(kv.pool.numFreeBlocks, 4);
    assert.equal(kv.getComputedBlocks(req("b", range(7))).numComputedTokens, 0);
    kv.pool.checkInvariants();
  });
});
