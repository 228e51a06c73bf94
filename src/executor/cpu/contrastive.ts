// Contrastive search's look-ahead: one extra forward of each request's top-k candidate tokens, written
// into the executor's scratch KV blocks (a candidate's own block is a copy of the request's partial
// block), so the engine's blocks are never touched. The chosen token is computed again in the next step
// like any generated token, which reproduces the candidate's hidden state exactly.
import type { ForwardPass, SeqWork } from "./forward.ts";
import type { RequestState } from "./model-runner.ts";
import { contrastivePick, topIndices } from "./sampler.ts";

interface Pending {
  reqId: string;
  candIds: number[];
  candProbs: number[];
}

export function contrastiveStep(
  fwd: ForwardPass,
  states: Map<string, RequestState>,
  reqs: Array<{ reqId: string; processed: Float64Array }>,
): Map<string, number> {
  const kv = fwd.kv;
  const bs = kv.blockSize;
  const picks = new Map<string, number>();
  let work: SeqWork[] = [];
  let owners: Pending[] = [];
  let scratchUsed = 0;
  const flush = () => {
    if (work.length === 0) return;
    const results = fwd.forward(work);
    let r = 0;
    for (const p of owners) {
      const st = states.get(p.reqId)!;
      const hidden = results.slice(r, r + p.candIds.length).map((x) => x.hidden[0]);
      r += p.candIds.length;
      picks.set(
        p.reqId,
        contrastivePick(p.candIds, p.candProbs, hidden, st.hidden, st.sampling.penaltyAlpha),
      );
    }
    work = [];
    owners = [];
    scratchUsed = 0;
  };
  for (const { reqId, processed } of reqs) {
    const st = states.get(reqId)!;
    const max = processed.reduce((m, v) => Math.max(m, v), -Infinity);
    let z = 0;
    for (const v of processed) z += Math.exp(v - max);
    const k = Math.max(1, Math.min(st.sampling.topK > 0 ? st.sampling.topK : 4, kv.numScratchBlocks));
    const candIds = topIndices(processed, k);
    const candProbs = candIds.map((id) => Math.exp(processed[id] - max) / z);
    if (scratchUsed + k > kv.numScratchBlocks) flush();
    const pos = st.tokenIds.length;
    const blockIdx = Math.floor(pos / bs);
    const inBlock = pos % bs;
    for (const id of candIds) {
      const sb = kv.scratchBlock(scratchUsed++);
      if (inBlock > 0) kv.copyBlockPrefix(st.blockTable[blockIdx], sb, inBlock);
      work.push({
        tokens: [id],
        startPos: pos,
        blockTable: [...st.blockTable.slice(0, blockIdx), sb],
        logits: "none",
        hidden: true,
      });
    }
    owners.push({ reqId, candIds, candProbs });
  }
  flush();
  return picks;
}
