// A single-consumer queue between the step loop (producer, synchronous push) and one request's
// generate() iterator (consumer, awaits next()). Unbounded: the loop never waits for a slow client;
// a request's deltas are few and small next to its KV blocks.

export class AsyncQueue<T> {
  private readonly items: T[] = [];
  private waiter: ((item: T) => void) | null = null;

  push(item: T): void {
    const w = this.waiter;
    if (w !== null) {
      this.waiter = null;
      w(item);
    } else {
      this.items.push(item);
    }
  }

  next(): Promise<T> {
    if (this.items.length > 0) return Promise.resolve(this.items.shift() as T);
    if (this.waiter !== null) throw new Error("AsyncQueue has a single consumer");
    return new Promise((resolve) => {
      this.waiter = resolve;
    });
  }

  get size(): number {
    return this.items.length;
  }
}

/**
 * One request's deltas from its queue, up to and including the finished one (what both engines' generate()
 * yield). An Error item is thrown: the request was refused and nothing holds it. `abort` runs when `signal`
 * fires and when the consumer stops before the finished delta (break, return, throw); `done` runs at the end
 * either way. abort may run after the request finished on the engine's side: it must ignore that.
 */
export async function* deltasOf<T extends { finished: boolean }>(
  queue: AsyncQueue<T | Error>,
  abort: () => void,
  signal?: AbortSignal,
  done?: () => void,
): AsyncGenerator<T> {
  let finished = false;
  signal?.addEventListener("abort", abort, { once: true });
  if (signal?.aborted) abort();
  try {
    while (true) {
      const item = await queue.next();
      if (item instanceof Error) {
        finished = true;
        throw item;
      }
      if (item.finished) finished = true;
      yield item;
      if (finished) return;
    }
  } finally {
    signal?.removeEventListener("abort", abort);
    done?.();
    if (!finished) abort();
  }
}
