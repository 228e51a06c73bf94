// When each benchmark request is sent: vLLM's arrival process. Request rate r with burstiness b gives
// gamma-distributed gaps of shape b and mean 1/r (b = 1 is a Poisson process; b < 1 is burstier);
// r = Infinity sends everything at t = 0. The first request always goes at t = 0 and offsets only grow.

import type { Rng } from "./random.ts";

/** Send offsets in ms from the start of the run, one per request. */
export function arrivalOffsetsMs(n: number, ratePerS: number, burstiness: number, rng: Rng): number[] {
  if (!(ratePerS > 0)) throw new RangeError(`request rate must be > 0, got ${ratePerS}`);
  if (!(burstiness > 0)) throw new RangeError(`burstiness must be > 0, got ${burstiness}`);
  const out: number[] = [];
  let t = 0;
  for (let i = 0; i < n; i++) {
    out.push(t);
    if (Number.isFinite(ratePerS)) t += rng.gamma(burstiness, 1000 / (ratePerS * burstiness));
  }
  return out;
}
