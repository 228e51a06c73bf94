// How transfers run: a bounded pool (many parts in flight, never unbounded sockets or memory) and
// retries with exponential backoff for transient failures. Permanent failures (404, 403, a full
// disk) are not retried: the caller's `isRetryable` decides.
import { setTimeout as sleep } from "node:timers/promises";

/** Runs `fn` over `items` with at most `limit` in flight; rejects with the first error, after the rest settle. */
export async function mapConcurrent<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  let firstError: { err: unknown } | null = null;
  async function worker(): Promise<void> {
    while (firstError === null && next < items.length) {
      const i = next++;
      try {
        await fn(items[i], i);
      } catch (err) {
        firstError ??= { err };
      }
    }
  }
  const n = Math.max(1, Math.min(limit, items.length));
  await Promise.all(Array.from({ length: n }, worker));
  if (firstError !== null) throw (firstError as { err: unknown }).err;
}

export interface RetryOptions {
  attempts: number;
  baseDelayMs: number;
  signal?: AbortSignal;
  isRetryable: (err: unknown) => boolean;
  onRetry?: (err: unknown, attempt: number) => void;
}

export async function withRetries<T>(fn: (attempt: number) => Promise<T>, opts: RetryOptions): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      // After an abort, report the abort itself: streams surface it as odd errors (even plain strings).
      if (opts.signal?.aborted) throw opts.signal.reason ?? err;
      if (attempt >= opts.attempts || !opts.isRetryable(err)) throw err;
      opts.onRetry?.(err, attempt);
      await sleep(opts.baseDelayMs * 2 ** (attempt - 1), undefined, { signal: opts.signal });
    }
  }
}
