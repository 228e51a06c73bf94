// Summary statistics for benchmark samples, with numpy's conventions so our numbers line up with
// `vllm bench serve`: percentiles interpolate linearly between order statistics (np.percentile's
// default), the median is the 50th percentile, and std is the population deviation (np.std, ddof=0).
// An empty sample has no statistics: every field is null rather than a made-up 0.

export interface Summary {
  mean: number | null;
  median: number | null;
  std: number | null;
  /** Keyed by the percentile as written, e.g. { "90": 12.5, "99": 20.1 }. */
  percentiles: Record<string, number | null>;
}

export function mean(xs: readonly number[]): number | null {
  if (xs.length === 0) return null;
  let s = 0;
  for (const x of xs) s += x;
  return s / xs.length;
}

export function std(xs: readonly number[]): number | null {
  const m = mean(xs);
  if (m === null) return null;
  let s = 0;
  for (const x of xs) s += (x - m) * (x - m);
  return Math.sqrt(s / xs.length);
}

/** np.percentile(xs, p) with linear interpolation; p in [0, 100]. */
export function percentile(xs: readonly number[], p: number): number | null {
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile must be in [0, 100], got ${p}`);
  if (xs.length === 0) return null;
  const sorted = [...xs].sort((a, b) => a - b);
  return percentileOfSorted(sorted, p);
}

function percentileOfSorted(sorted: readonly number[], p: number): number {
  const rank = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  const frac = rank - lo;
  return sorted[lo] + (sorted[hi] - sorted[lo]) * frac;
}

export function median(xs: readonly number[]): number | null {
  return percentile(xs, 50);
}

export function summarize(xs: readonly number[], percentiles: readonly number[]): Summary {
  const sorted = [...xs].sort((a, b) => a - b);
  const ps: Record<string, number | null> = {};
  for (const p of percentiles) ps[String(p)] = sorted.length ? percentileOfSorted(sorted, p) : null;
  return {
    mean: mean(xs),
    median: sorted.length ? percentileOfSorted(sorted, 50) : null,
    std: std(xs),
    percentiles: ps,
  };
}

/** Least-squares slope of ys over xs (0 when there are fewer than two points or xs do not vary). */
export function slope(xs: readonly number[], ys: readonly number[]): number {
  const n = xs.length;
  if (n < 2) return 0;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i] - mx) * (ys[i] - my);
    den += (xs[i] - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}
