// Spelling suggestions for unknown configuration keys ("did you mean option.max_rolling_batch_size?").
// Invariant: a suggestion is only offered when it is close: edit distance at most 2, or a third of the
// key's length for long keys, compared case-insensitively.

/** Levenshtein distance between a and b (two-row dynamic programming). */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost);
    }
    prev = cur;
  }
  return prev[b.length];
}

/** The closest candidate to `key`, or undefined when none is close enough to be a likely typo. */
export function didYouMean(key: string, candidates: Iterable<string>): string | undefined {
  const lower = key.toLowerCase();
  const limit = Math.max(2, Math.floor(key.length / 3));
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const c of candidates) {
    const d = editDistance(lower, c.toLowerCase());
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return bestDistance <= limit ? best : undefined;
}
