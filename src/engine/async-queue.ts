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
