// The FCFS waiting queue. Preempted requests go back to the front, so they resume before newer ones
// (vLLM v1 prepend on preemption). Removal by id (aborts) is O(n), fine for job-queue-sized lists.

import type { Request } from "../request.ts";

export class RequestQueue {
  private items: Request[] = [];

  get length(): number {
    return this.items.length;
  }

  peek(): Request | null {
    return this.items[0] ?? null;
  }

  pushBack(req: Request): void {
    this.items.push(req);
  }

  pushFront(req: Request): void {
    this.items.unshift(req);
  }

  popFront(): Request | null {
    return this.items.shift() ?? null;
  }

  remove(req: Request): boolean {
    const i = this.items.indexOf(req);
    if (i < 0) return false;
    this.items.splice(i, 1);
    return true;
  }

  toArray(): readonly Request[] {
    return this.items;
  }
}
