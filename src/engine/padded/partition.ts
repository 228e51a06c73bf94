// Splitting a padded batch (spec §4.3, max_sparsity / max_splits): sequences sorted by length, cut into
// contiguous parts that minimise total padding (dynamic programming), using the fewest parts, at most
// maxSplits, whose sparsity (padded − real) / padded is <= maxSparsity. Pure.
// Invariant: every index 0..n-1 appears in exactly one part; parts are listed longest first, and rows
// inside a part longest first (ties by index), so equal inputs always give equal layouts.

export interface PartitionOptions {
  /** option.max_sparsity: most padding fraction accepted, 0..1 (default 0.33). */
  maxSparsity: number;
  /** option.max_splits: most parts (default 3). */
  maxSplits: number;
}

export interface Partition {
  /** Indices into the input lengths, one array per part. */
  parts: number[][];
  /** Tokens of padding: sum over parts of size * longest - real. */
  padding: number;
  /** (padded - real) / padded; 0 for an empty input. */
  sparsity: number;
}

function check(lengths: readonly number[], opts: PartitionOptions): void {
  for (const [i, n] of lengths.entries()) {
    if (!Number.isInteger(n) || n < 0)
      throw new Error(`sequence length ${i} must be an integer >= 0, got ${n}`);
  }
  if (!(opts.maxSparsity >= 0 && opts.maxSparsity <= 1))
    throw new Error(`max_sparsity must be in [0, 1], got ${opts.maxSparsity}`);
  if (!Number.isInteger(opts.maxSplits) || opts.maxSplits < 1)
    throw new Error(`max_splits must be an integer >= 1, got ${opts.maxSplits}`);
}

/** Indices sorted by length, longest first; ties keep input order. */
export function sortByLengthDesc(lengths: readonly number[]): number[] {
  return lengths.map((_, i) => i).sort((a, b) => lengths[b] - lengths[a] || a - b);
}

/**
 * For sorted (descending) lengths, minimal padding with exactly k contiguous parts for every
 * k = 1..maxParts: cut[k][j] is where the last part of the best k-part split of the first j items begins.
 */
function solve(sorted: readonly number[], maxParts: number): { pad: number[][]; cut: number[][] } {
  const n = sorted.length;
  const prefix = [0];
  for (const x of sorted) prefix.push(prefix[prefix.length - 1] + x);
  // Padding of part [i, j): its first item is the longest.
  const cost = (i: number, j: number) => (j - i) * sorted[i] - (prefix[j] - prefix[i]);
  const pad: number[][] = [Array.from({ length: n + 1 }, (_, j) => (j === 0 ? 0 : Infinity))];
  const cut: number[][] = [new Array(n + 1).fill(0)];
  for (let k = 1; k <= maxParts; k++) {
    const row = new Array<number>(n + 1).fill(Infinity);
    const at = new Array<number>(n + 1).fill(0);
    for (let j = k; j <= n; j++) {
      for (let i = k - 1; i < j; i++) {
        const c = pad[k - 1][i] + cost(i, j);
        if (c < row[j]) {
          row[j] = c;
          at[j] = i;
        }
      }
    }
    pad.push(row);
    cut.push(at);
  }
  return { pad, cut };
}

/** The least-padding contiguous split of sorted lengths into exactly k parts (k <= n). */
function partsOf(cut: number[][], n: number, k: number): Array<[number, number]> {
  const parts: Array<[number, number]> = [];
  let j = n;
  for (let kk = k; kk >= 1; kk--) {
    const i = cut[kk][j];
    parts.unshift([i, j]);
    j = i;
  }
  return parts;
}

/**
 * Minimal total padding for exactly k contiguous parts of the sorted lengths, for k = 1..maxParts
 * (Infinity where k > n). Exposed for tests that check it against brute force.
 */
export function minPaddingByParts(lengths: readonly number[], maxParts: number): number[] {
  const sorted = sortByLengthDesc(lengths).map((i) => lengths[i]);
  const { pad } = solve(sorted, maxParts);
  return pad.slice(1).map((row) => row[sorted.length]);
}

/**
 * Chooses the sub-batches for sequences of the given lengths: the smallest k <= maxSplits whose
 * least-padding split has sparsity <= maxSparsity; when none does, the least-padding split into
 * min(maxSplits, n) parts (more parts never add padding).
 */
export function choosePartition(lengths: readonly number[], opts: PartitionOptions): Partition {
  check(lengths, opts);
  const n = lengths.length;
  if (n === 0) return { parts: [], padding: 0, sparsity: 0 };
  const order = sortByLengthDesc(lengths);
  const sorted = order.map((i) => lengths[i]);
  const real = sorted.reduce((a, b) => a + b, 0);
  const maxK = Math.min(opts.maxSplits, n);
  const { pad, cut } = solve(sorted, maxK);
  let k = 1;
  for (; k < maxK; k++) {
    const padded = real + pad[k][n];
    // An all-empty batch has nothing padded: sparsity 0.
    if (padded === 0 || pad[k][n] / padded <= opts.maxSparsity) break;
  }
  const padding = pad[k][n];
  const padded = real + padding;
  return {
    parts: partsOf(cut, n, k).map(([i, j]) => order.slice(i, j)),
    padding,
    sparsity: padded === 0 ? 0 : padding / padded,
  };
}
