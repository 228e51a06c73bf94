// Test oracle: a deliberately simple forward pass over one whole sequence with contiguous K/V and
// plain loops (no paging, no groups, no backend), sharing only ops.ts with the real forward. Paged,
// batched and chunked runs of ForwardPass must reproduce its logits.
import type { ModelSpec } from "../model-config.ts";
import { activate, applyRope, headRmsNorm, normRows, ropeInvFreq, ropeTables } from "../ops.ts";
import type { Linear, ModelWeights } from "../weights.ts";

const bits = new Uint32Array(1);
const asF32 = new Float32Array(bits.buffer);

/** Weight i of a Linear, whichever storage (fp32 or bf16 bits) it uses. */
function wAt(l: Linear, i: number): number {
  if (!l.w16) return l.w[i];
  bits[0] = l.w16[i] << 16;
  return asF32[0];
}

function lin(x: Float32Array, l: Linear): Float32Array {
  const y = new Float32Array(l.out);
  for (let n = 0; n < l.out; n++) {
    let s = l.b ? l.b[n] : 0;
    for (let k = 0; k < l.in; k++) s += x[k] * wAt(l, n * l.in + k);
    y[n] = s;
  }
  return y;
}

function gated(x: Float32Array, gateUp: Linear, down: Linear, spec: ModelSpec): Float32Array {
  const gu = lin(x, gateUp);
  const I = gateUp.out / 2;
  const a = new Float32Array(I);
  for (let i = 0; i < I; i++) a[i] = activate(gu[i], spec.act) * gu[I + i];
  return lin(a, down);
}

/** Logits [positions][vocab] of the whole token sequence. */
export function referenceLogits(spec: ModelSpec, w: ModelWeights, tokens: number[]): Float32Array[] {
  return referenceForward(spec, w, tokens).logits;
}

/** Logits and final-normed hidden states of every position. */
export function referenceForward(
  spec: ModelSpec,
  w: ModelWeights,
  tokens: number[],
): { logits: Float32Array[]; hidden: Float32Array[] } {
  const H = spec.hiddenSize;
  const hd = spec.headDim;
  const nq = spec.numHeads * hd;
  const nk = spec.numKvHeads * hd;
  const inv = spec.rope ? ropeInvFreq(spec.rope) : null;
  const half = spec.rope ? spec.rope.rotaryDim / 2 : 0;
  const xs = tokens.map((t, p) => {
    const x = w.embed.slice(t * H, (t + 1) * H);
    if (w.posEmbed) for (let i = 0; i < H; i++) x[i] += w.posEmbed[p * H + i];
    return x;
  });
  for (const L of w.layers) {
    const keys: Float32Array[] = [];
    const vals: Float32Array[] = [];
    const qs: Float32Array[] = [];
    xs.forEach((x, p) => {
      const h = new Float32Array(H);
      normRows(h, x, 1, H, L.ln1, spec.norm, spec.normEps);
      const qkv = lin(h, L.qkv);
      if (L.qNorm && L.kNorm) {
        headRmsNorm(qkv, 0, spec.numHeads, hd, L.qNorm, spec.normEps);
        headRmsNorm(qkv, nq, spec.numKvHeads, hd, L.kNorm, spec.normEps);
      }
      if (inv) {
        const { cos, sin } = ropeTables(inv, Int32Array.of(p), 1);
        applyRope(qkv, 0, spec.numHeads, hd, cos, sin, 0, half);
        applyRope(qkv, nq, spec.numKvHeads, hd, cos, sin, 0, half);
      }
      qs.push(qkv.slice(0, nq));
      keys.push(qkv.slice(nq, nq + nk));
      vals.push(qkv.slice(nq + nk));
    });
    xs.forEach((x, p) => {
      const att = new Float32Array(nq);
      for (let h = 0; h < spec.numHeads; h++) {
        const g = Math.floor(h / (spec.numHeads / spec.numKvHeads));
        const lo = spec.slidingWindow ? Math.max(0, p - spec.slidingWindow + 1) : 0;
        const sc: number[] = [];
        for (let j = lo; j <= p; j++) {
          let d = 0;
          for (let i = 0; i < hd; i++) d += qs[p][h * hd + i] * keys[j][g * hd + i];
          sc.push(d / Math.sqrt(hd));
        }
        const m = Math.max(...sc);
        const e = sc.map((v) => Math.exp(v - m));
        const z = e.reduce((a, b) => a + b, 0);
        for (let j = lo; j <= p; j++)
          for (let i = 0; i < hd; i++) att[h * hd + i] += (e[j - lo] / z) * vals[j][g * hd + i];
      }
      const o = lin(att, L.o);
      const h2 = new Float32Array(H);
      const base = spec.parallelResidual ? x : x.map((v, i) => v + o[i]);
      normRows(h2, base, 1, H, L.ln2, spec.norm, spec.normEps);
      let m: Float32Array;
      if (L.mlp.kind === "plain") {
        const a = lin(h2, L.mlp.fc).map((v) => activate(v, spec.act));
        m = lin(a, L.mlp.proj);
      } else if (L.mlp.kind === "gated") {
        m = gated(h2, L.mlp.gateUp, L.mlp.down, spec);
      } else {
        const logits = Array.from(lin(h2, L.mlp.router));
        const top = logits
          .map((v, e) => [v, e])
          .sort((a, b) => b[0] - a[0])
          .slice(0, spec.numExpertsPerTok);
        const ex = top.map(([v]) => Math.exp(v - top[0][0]));
        const z = ex.reduce((a, b) => a + b, 0);
        m = new Float32Array(H);
        top.forEach(([, e], i) => {
          const mo =
            L.mlp.kind === "moe" ? gated(h2, L.mlp.experts[e].gateUp, L.mlp.experts[e].down, spec) : m;
          for (let k = 0; k < H; k++) m[k] += (ex[i] / z) * mo[k];
        });
      }
      for (let i = 0; i < H; i++) x[i] = spec.parallelResidual ? x[i] + o[i] + m[i] : base[i] + m[i];
    });
  }
  const hidden = xs.map((x) => {
    const h = new Float32Array(H);
    normRows(h, x, 1, H, w.finalNorm, spec.norm, spec.normEps);
    return h;
  });
  return { logits: hidden.map((h) => lin(h, w.lmHead)), hidden };
}
