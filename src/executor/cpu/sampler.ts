// Token selection for one request from one row of logits: penalties and bias (logits processors),
// then greedy argmax or seeded sampling after temperature/top-k/top-p/min-p/typical-p (HF order).
// Invariants: the uniform draw for a request's n-th generated token depends only on (seed, n), so a
// seeded request samples alike in any batch; logprobs come from log_softmax of the raw model logits,
// before any processor or warper (vLLM's default "raw logprobs"), so they describe the model itself.
import type { SamplingSettings, TokenLogprobs } from "../types.ts";

const MASK64 = (1n << 64n) - 1n;

/** splitmix64 output number n+1 for state `seed`, as a double in [0, 1) from its top 53 bits. */
export function uniformDraw(seed: number, n: number): number {
  let z = (BigInt.asUintN(64, BigInt(Math.trunc(seed))) + BigInt(n + 1) * 0x9e3779b97f4a7c15n) & MASK64;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  z ^= z >> 31n;
  return Number(z >> 11n) / 2 ** 53;
}

export function logSoftmax(logits: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  const lse = max + Math.log(sum);
  const out = new Float64Array(logits.length);
  for (let i = 0; i < logits.length; i++) out[i] = logits[i] - lse;
  return out;
}

/** Indices of the k largest values, largest first; ties go to the lower index. */
export function topIndices(values: ArrayLike<number>, k: number): number[] {
  const out: number[] = [];
  if (k <= 0) return out;
  // Insertion into a small sorted list: k is small (logprobs, top-k), vocab is large.
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (out.length === k && !(v > values[out[k - 1]])) continue;
    let j = out.length === k ? k - 1 : out.length;
    while (j > 0 && v > values[out[j - 1]]) {
      if (j < k) out[j] = out[j - 1];
      j--;
    }
    out[j] = i;
  }
  return out;
}

export function tokenLogprobs(lsm: Float64Array, chosen: number, numTop: number): TokenLogprobs {
  return { logprob: lsm[chosen], top: topIndices(lsm, numTop).map((i) => [i, lsm[i]] as [number, number]) };
}

/**
 * Logits processors, in this order: logit bias, eos suppression before minTokens, repetition penalty
 * (HF: over prompt + generated), presence/frequency penalties (OpenAI: over generated tokens only).
 * ignoreEos does not change sampling: it only tells the engine not to stop on eos.
 */
export function processLogits(
  logits: ArrayLike<number>,
  s: SamplingSettings,
  tokenIds: ArrayLike<number>,
  promptLen: number,
): Float64Array {
  const l = Float64Array.from(logits);
  for (const [k, b] of Object.entries(s.logitBias)) {
    const id = Number(k);
    if (id >= 0 && id < l.length) l[id] += b;
  }
  const numGenerated = tokenIds.length - promptLen;
  if (numGenerated < s.minTokens) for (const e of s.eosTokenIds) if (e < l.length) l[e] = -Infinity;
  if (s.repetitionPenalty !== 1) {
    const seen = new Set<number>();
    for (let i = 0; i < tokenIds.length; i++) seen.add(tokenIds[i]);
    for (const t of seen) {
      if (t >= l.length) continue;
      l[t] = l[t] < 0 ? l[t] * s.repetitionPenalty : l[t] / s.repetitionPenalty;
    }
  }
  if (s.presencePenalty !== 0 || s.frequencyPenalty !== 0) {
    const counts = new Map<number, number>();
    for (let i = promptLen; i < tokenIds.length; i++)
      counts.set(tokenIds[i], (counts.get(tokenIds[i]) ?? 0) + 1);
    for (const [t, c] of counts) {
      if (t < l.length) l[t] -= s.presencePenalty + s.frequencyPenalty * c;
    }
  }
  return l;
}

export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

interface Cand {
  id: number;
  logit: number;
}

function probsOf(c: Cand[]): number[] {
  const max = c.reduce((m, x) => Math.max(m, x.logit), -Infinity);
  const e = c.map((x) => Math.exp(x.logit - max));
  const z = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / z);
}

/** Candidates surviving temperature, top-k, top-p, min-p and typical-p, sorted by logit desc (id asc). */
export function warpedCandidates(
  processed: Float64Array,
  s: SamplingSettings,
): { cands: Cand[]; probs: number[] } {
  let c: Cand[] = [];
  for (let i = 0; i < processed.length; i++) {
    if (processed[i] !== -Infinity) c.push({ id: i, logit: processed[i] / s.temperature });
  }
  if (c.length === 0) throw new Error("every token is masked: no token can be sampled");
  c.sort((a, b) => b.logit - a.logit || a.id - b.id);
  if (s.topK > 0 && s.topK < c.length) c = c.slice(0, s.topK);
  if (s.topP < 1) {
    const p = probsOf(c);
    let cum = 0;
    let keep = 0;
    while (keep < c.length && (keep === 0 || cum < s.topP)) cum += p[keep++];
    c = c.slice(0, keep);
  }
  if (s.minP > 0) {
    const p = probsOf(c);
    const thr = s.minP * p[0];
    c = c.filter((_, i) => i === 0 || p[i] >= thr);
  }
  if (s.typicalP < 1) {
    const p = probsOf(c);
    const ent = -p.reduce((a, q) => a + (q > 0 ? q * Math.log(q) : 0), 0);
    const order = c
      .map((_, i) => i)
      .sort((a, b) => Math.abs(-Math.log(p[a]) - ent) - Math.abs(-Math.log(p[b]) - ent) || a - b);
    let cum = 0;
    const kept: number[] = [];
    for (const i of order) {
      kept.push(i);
      cum += p[i];
      if (cum >= s.typicalP) break;
    }
    kept.sort((a, b) => a - b);
    c = kept.map((i) => c[i]);
  }
  return { cands: c, probs: probsOf(c) };
}

/** Picks the next token. n = how many tokens this request generated before this one. */
export function sampleToken(processed: Float64Array, s: SamplingSettings, n: number): number {
  if (s.strategy === "greedy") return argmax(processed);
  const { cands, probs } = warpedCandidates(processed, s);
  const u = uniformDraw(s.seed, n);
  let cum = 0;
  for (let i = 0; i < cands.length; i++) {
    cum += probs[i];
    if (u < cum) return cands[i].id;
  }
  return cands[cands.length - 1].id;
}

function cosine(a: Float32Array, b: Float32Array): number {
  let d = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    d += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return d / Math.max(Math.sqrt(na) * Math.sqrt(nb), 1e-8);
}

/**
 * Contrastive search (HF): score(v) = (1-α)·p(v) − α·max_j cos(h_v, h_j) over the candidates' hidden
 * states h_v and the sequence's previous last-layer hidden states h_j; the best score wins (first on ties).
 */
export function contrastivePick(
  candIds: number[],
  candProbs: number[],
  candHidden: Float32Array[],
  context: Float32Array[],
  alpha: number,
): number {
  let best = 0;
  let bestScore = -Infinity;
  for (let i = 0; i < candIds.length; i++) {
    let maxSim = -Infinity;
    for (const h of context) maxSim = Math.max(maxSim, cosine(candHidden[i], h));
    if (context.length === 0) maxSim = 0;
    const score = (1 - alpha) * candProbs[i] - alpha * maxSim;
    if (score > bestScore) {
      bestScore = score;
      best = i;
    }
  }
  return candIds[best];
}
