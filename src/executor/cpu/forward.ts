// The batched transformer forward pass over paged KV: many sequences' token runs flattened into
// groups of at most maxGroupTokens rows. Invariant: within a group all K/V are written before any row
// attends, and groups run in order, so a run split across groups equals one computed whole (chunked
// prefill is exact). Logits are produced only for the rows asked for.
import { KvCache, slotsFor } from "./kv-cache.ts";
import type { ModelSpec } from "./model-config.ts";
import { activate, applyRope, headRmsNorm, normRows, ropeInvFreq, ropeTables } from "./ops.ts";
import type { Linear, ModelWeights } from "./weights.ts";

export interface SeqWork {
  /** Token ids to compute, at positions startPos, startPos+1, ... */
  tokens: ArrayLike<number>;
  startPos: number;
  /** Block ids covering positions [0, startPos + tokens.length). */
  blockTable: ArrayLike<number>;
  /** Which rows' logits to return. */
  logits: "none" | "last" | "all";
  /** Return the final-normed hidden state of every computed row (contrastive search). */
  hidden: boolean;
}

export interface SeqResult {
  logits: Float32Array[];
  hidden: Float32Array[];
}

const LOGIT_ROWS = 16;

type Scratch = Record<
  | "x"
  | "h"
  | "qkv"
  | "att"
  | "o"
  | "gu"
  | "act"
  | "mo"
  | "ein"
  | "eout"
  | "lin"
  | "logits"
  | "router"
  | "scores",
  Float32Array
> & { slots: Int32Array };

// Backend memory is reserved once per loaded model, so every ForwardPass over the same weights (a new
// KV cache after initCache) shares one activation scratch instead of allocating again.
const scratchOf = new WeakMap<ModelWeights, { T: number; s: Scratch }>();

/** Floats of backend scratch a forward pass of maxGroupTokens rows needs. */
export function scratchFloatsFor(spec: ModelSpec, maxGroupTokens: number, vocab: number): number {
  const H = spec.hiddenSize;
  const q = spec.numHeads * spec.headDim;
  const qkv = q + 2 * spec.numKvHeads * spec.headDim;
  const I = spec.intermediateSize;
  return (
    maxGroupTokens * (6 * H + qkv + q + 3 * I + spec.numExperts) +
    LOGIT_ROWS * (H + vocab) +
    2 * maxPositions(spec)
  );
}

/** Longest context the attention scratch (slots, scores) is sized for. */
export function maxPositions(spec: ModelSpec): number {
  return Math.min(spec.maxPositionEmbeddings, 1 << 18);
}

export class ForwardPass {
  readonly vocab: number;
  private readonly invFreq: Float32Array | null;
  private readonly s: Scratch;

  constructor(
    readonly spec: ModelSpec,
    readonly w: ModelWeights,
    readonly kv: KvCache,
    readonly maxGroupTokens: number,
  ) {
    this.vocab = w.lmHead.out;
    this.invFreq = spec.rope ? ropeInvFreq(spec.rope) : null;
    const T = maxGroupTokens;
    const H = spec.hiddenSize;
    const q = spec.numHeads * spec.headDim;
    const I = spec.intermediateSize;
    const cached = scratchOf.get(w);
    if (cached && cached.T >= T) {
      this.s = cached.s;
      return;
    }
    const b = w.backend;
    this.s = {
      x: b.alloc(T * H),
      h: b.alloc(T * H),
      qkv: b.alloc(T * (q + 2 * spec.numKvHeads * spec.headDim)),
      att: b.alloc(T * q),
      o: b.alloc(T * H),
      gu: b.alloc(T * 2 * I),
      act: b.alloc(T * I),
      mo: b.alloc(T * H),
      ein: b.alloc(T * H),
      eout: b.alloc(T * H),
      router: b.alloc(T * Math.max(1, spec.numExperts)),
      lin: b.alloc(LOGIT_ROWS * H),
      logits: b.alloc(LOGIT_ROWS * this.vocab),
      scores: b.alloc(maxPositions(spec)),
      slots: b.allocI32(maxPositions(spec)),
    };
    scratchOf.set(w, { T, s: this.s });
  }

  private linear(y: Float32Array, x: Float32Array, l: Linear, rows: number): void {
    const b = this.w.backend;
    if (l.w16 && b.matmulBf16) b.matmulBf16(y, x, l.w16, rows, l.out, l.in);
    else b.matmul(y, x, l.w, rows, l.out, l.in);
    if (l.b) {
      const b = l.b;
      for (let r = 0; r < rows; r++) {
        const o = r * l.out;
        for (let i = 0; i < l.out; i++) y[o + i] += b[i];
      }
    }
  }

  forward(work: SeqWork[]): SeqResult[] {
    const results: SeqResult[] = work.map(() => ({ logits: [], hidden: [] }));
    const slots = work.map((wk) =>
      slotsFor(wk.blockTable, this.kv.blockSize, wk.startPos + wk.tokens.length),
    );
    // Flatten (seq, index) pairs and cut them into groups.
    let seq = 0;
    let idx = 0;
    const T = this.maxGroupTokens;
    const rowSeq = new Int32Array(T);
    const rowPos = new Int32Array(T);
    const rowTok = new Int32Array(T);
    for (;;) {
      let rows = 0;
      while (rows < T && seq < work.length) {
        if (idx >= work[seq].tokens.length) {
          seq++;
          idx = 0;
          continue;
        }
        rowSeq[rows] = seq;
        rowPos[rows] = work[seq].startPos + idx;
        rowTok[rows] = work[seq].tokens[idx];
        rows++;
        idx++;
      }
      if (rows === 0) break;
      this.runGroup(rows, rowSeq, rowPos, rowTok, slots, work, results);
    }
    return results;
  }

  private runGroup(
    rows: number,
    rowSeq: Int32Array,
    rowPos: Int32Array,
    rowTok: Int32Array,
    slots: Int32Array[],
    work: SeqWork[],
    results: SeqResult[],
  ): void {
    const { spec, w, s } = this;
    const H = spec.hiddenSize;
    for (let r = 0; r < rows; r++) {
      const t = rowTok[r];
      if (t < 0 || t * H >= w.embed.length) throw new Error(`token id ${t} outside the vocabulary`);
      s.x.set(w.embed.subarray(t * H, (t + 1) * H), r * H);
      if (w.posEmbed) {
        const p = rowPos[r] * H;
        if (p >= w.posEmbed.length) throw new Error(`position ${rowPos[r]} beyond n_positions`);
        for (let i = 0; i < H; i++) s.x[r * H + i] += w.posEmbed[p + i];
      }
    }
    const rope = this.invFreq ? ropeTables(this.invFreq, rowPos, rows) : null;
    for (let l = 0; l < spec.numLayers; l++) {
      const L = w.layers[l];
      normRows(s.h, s.x, rows, H, L.ln1, spec.norm, spec.normEps);
      this.linear(s.qkv, s.h, L.qkv, rows);
      this.prepareQkv(l, rows, rowSeq, rowPos, slots, rope);
      this.attend(l, rows, rowSeq, rowPos, slots);
      this.linear(s.o, s.att, L.o, rows);
      if (spec.parallelResidual) {
        normRows(s.h, s.x, rows, H, L.ln2, spec.norm, spec.normEps);
        this.mlp(l, rows);
        for (let i = 0; i < rows * H; i++) s.x[i] += s.o[i] + s.mo[i];
      } else {
        for (let i = 0; i < rows * H; i++) s.x[i] += s.o[i];
        normRows(s.h, s.x, rows, H, L.ln2, spec.norm, spec.normEps);
        this.mlp(l, rows);
        for (let i = 0; i < rows * H; i++) s.x[i] += s.mo[i];
      }
    }
    normRows(s.h, s.x, rows, H, w.finalNorm, spec.norm, spec.normEps);
    this.collect(rows, rowSeq, rowPos, work, results);
  }

  /** Bias already added; applies q/k norms and RoPE, then writes K and V into the paged cache. */
  private prepareQkv(
    l: number,
    rows: number,
    rowSeq: Int32Array,
    rowPos: Int32Array,
    slots: Int32Array[],
    rope: { cos: Float32Array; sin: Float32Array } | null,
  ): void {
    const { spec, s, kv } = this;
    const L = this.w.layers[l];
    const hd = spec.headDim;
    const nq = spec.numHeads * hd;
    const nk = spec.numKvHeads * hd;
    const width = nq + 2 * nk;
    const half = spec.rope ? spec.rope.rotaryDim / 2 : 0;
    const kc = kv.k[l];
    const vc = kv.v[l];
    for (let r = 0; r < rows; r++) {
      const o = r * width;
      if (L.qNorm && L.kNorm) {
        headRmsNorm(s.qkv, o, spec.numHeads, hd, L.qNorm, spec.normEps);
        headRmsNorm(s.qkv, o + nq, spec.numKvHeads, hd, L.kNorm, spec.normEps);
      }
      if (rope) {
        applyRope(s.qkv, o, spec.numHeads, hd, rope.cos, rope.sin, r * half, half);
        applyRope(s.qkv, o + nq, spec.numKvHeads, hd, rope.cos, rope.sin, r * half, half);
      }
      const slot = slots[rowSeq[r]][rowPos[r]];
      kc.set(s.qkv.subarray(o + nq, o + nq + nk), slot * nk);
      vc.set(s.qkv.subarray(o + nq + nk, o + width), slot * nk);
    }
  }

  private attend(l: number, rows: number, rowSeq: Int32Array, rowPos: Int32Array, slots: Int32Array[]): void {
    const { spec, s, kv } = this;
    const hd = spec.headDim;
    const nq = spec.numHeads * hd;
    const width = nq + 2 * spec.numKvHeads * hd;
    const win = spec.slidingWindow;
    const limit = s.slots.length;
    let loaded = -1;
    for (let r = 0; r < rows; r++) {
      const pos = rowPos[r];
      if (pos >= limit) throw new Error(`position ${pos} beyond the model's ${limit} positions`);
      if (rowSeq[r] !== loaded) {
        // Rows of one sequence are contiguous: copy its slot list into backend memory once.
        loaded = rowSeq[r];
        const src = slots[loaded];
        s.slots.set(src.subarray(0, Math.min(src.length, limit)));
      }
      const lo = win ? Math.max(0, pos - win + 1) : 0;
      this.w.backend.attendRow({
        out: s.att.subarray(r * nq, (r + 1) * nq),
        q: s.qkv.subarray(r * width, r * width + nq),
        kc: kv.k[l],
        vc: kv.v[l],
        slots: s.slots.subarray(lo, pos + 1),
        n: pos - lo + 1,
        scores: s.scores,
        nh: spec.numHeads,
        nkv: spec.numKvHeads,
        hd,
        scale: 1 / Math.sqrt(hd),
      });
    }
  }

  /** s.h (normed input) -> s.mo. */
  private mlp(l: number, rows: number): void {
    const { spec, s } = this;
    const m = this.w.layers[l].mlp;
    if (m.kind === "plain") {
      this.linear(s.act, s.h, m.fc, rows);
      const n = rows * m.fc.out;
      for (let i = 0; i < n; i++) s.act[i] = activate(s.act[i], spec.act);
      this.linear(s.mo, s.act, m.proj, rows);
    } else if (m.kind === "gated") {
      this.gated(s.mo, s.h, m.gateUp, m.down, rows);
    } else {
      this.moe(l, rows);
    }
  }

  private gated(out: Float32Array, x: Float32Array, gateUp: Linear, down: Linear, rows: number): void {
    const { s, spec } = this;
    const I = gateUp.out / 2;
    this.linear(s.gu, x, gateUp, rows);
    const b = this.w.backend;
    if (spec.act === "silu" && b.siluMul) {
      b.siluMul(s.act, s.gu, rows, I);
      this.linear(out, s.act, down, rows);
      return;
    }
    for (let r = 0; r < rows; r++) {
      const o = r * 2 * I;
      for (let i = 0; i < I; i++) s.act[r * I + i] = activate(s.gu[o + i], spec.act) * s.gu[o + I + i];
    }
    this.linear(out, s.act, down, rows);
  }

  /** Mixtral: softmax over the router logits, keep the top-k experts, renormalise their weights. */
  private moe(l: number, rows: number): void {
    const { s, spec } = this;
    const m = this.w.layers[l].mlp;
    if (m.kind !== "moe") return;
    const H = spec.hiddenSize;
    const E = spec.numExperts;
    this.linear(s.router, s.h, m.router, rows);
    s.mo.fill(0, 0, rows * H);
    const chosen: Array<Array<{ row: number; weight: number }>> = Array.from({ length: E }, () => []);
    for (let r = 0; r < rows; r++) {
      const logits = Array.from(s.router.subarray(r * E, (r + 1) * E));
      const order = logits.map((v, e) => [v, e] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
      const top = order.slice(0, spec.numExpertsPerTok);
      const mx = top[0][0];
      const ex = top.map(([v]) => Math.exp(v - mx));
      const z = ex.reduce((a, b) => a + b, 0);
      for (let i = 0; i < top.length; i++) chosen[top[i][1]].push({ row: r, weight: ex[i] / z });
    }
    for (let e = 0; e < E; e++) {
      const list = chosen[e];
      if (list.length === 0) continue;
      for (let i = 0; i < list.length; i++)
        s.ein.set(s.h.subarray(list[i].row * H, (list[i].row + 1) * H), i * H);
      this.gated(s.eout, s.ein, m.experts[e].gateUp, m.experts[e].down, list.length);
      list.forEach(({ row, weight }, i) => {
        for (let k = 0; k < H; k++) s.mo[row * H + k] += weight * s.eout[i * H + k];
      });
    }
  }

  /** Copies out hidden states and computes logits for the rows each sequence asked for. */
  private collect(
    rows: number,
    rowSeq: Int32Array,
    rowPos: Int32Array,
    work: SeqWork[],
    results: SeqResult[],
  ) {
    const { s, spec } = this;
    const H = spec.hiddenSize;
    const want: number[] = [];
    for (let r = 0; r < rows; r++) {
      const wk = work[rowSeq[r]];
      if (wk.hidden) results[rowSeq[r]].hidden.push(s.h.slice(r * H, (r + 1) * H));
      const isLast = rowPos[r] === wk.startPos + wk.tokens.length - 1;
      if (wk.logits === "all" || (wk.logits === "last" && isLast)) want.push(r);
    }
    for (let i = 0; i < want.length; i += LOGIT_ROWS) {
      const chunk = want.slice(i, i + LOGIT_ROWS);
      for (let j = 0; j < chunk.length; j++) s.lin.set(s.h.subarray(chunk[j] * H, (chunk[j] + 1) * H), j * H);
      this.linear(s.logits, s.lin, this.w.lmHead, chunk.length);
      for (let j = 0; j < chunk.length; j++) {
        results[rowSeq[chunk[j]]].logits.push(s.logits.slice(j * this.vocab, (j + 1) * this.vocab));
      }
    }
  }
}

export { KvCache };
