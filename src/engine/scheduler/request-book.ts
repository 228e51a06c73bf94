// Request bookkeeping shared by the paged Scheduler and the PaddedScheduler: every live request by id,
// the FCFS waiting queue, the running list, the ids finished since the last plan, and the step counter.
// Pure and synchronous. Invariant: a request is in exactly one of waiting / running until it finishes.

import type { Request } from "../request.ts";
import { RequestQueue } from "./request-queue.ts";

export abstract class RequestBook {
  protected readonly requests = new Map<string, Request>();
  protected readonly waiting = new RequestQueue();
  protected running: Request[] = [];
  protected finishedSinceLastStep: string[] = [];
  protected stepId = 0;

  constructor(private readonly bookMaxModelLen: number) {}

  addRequest(req: Request): void {
    if (this.requests.has(req.reqId)) throw new Error(`duplicate request id ${req.reqId}`);
    if (req.numTokens >= this.bookMaxModelLen) {
      throw new Error(`request ${req.reqId}: prompt of ${req.numTokens} tokens reaches maxModelLen`);
    }
    req.status = "waiting";
    req.arrivalStep = this.stepId;
    // A step still in flight may carry an earlier request of the same id: its output is not this one's.
    req.ignoreOutputsBefore = this.stepId;
    this.requests.set(req.reqId, req);
    this.waiting.pushBack(req);
  }

  getRequest(reqId: string): Request | undefined {
    return this.requests.get(reqId);
  }

  get hasUnfinishedRequests(): boolean {
    return this.running.length + this.waiting.length > 0;
  }

  /** True when the next schedule() has something to tell the executor, even with no tokens. */
  get hasPendingWork(): boolean {
    return this.hasUnfinishedRequests || this.finishedSinceLastStep.length > 0;
  }

  get numWaiting(): number {
    return this.waiting.length;
  }

  get numRunning(): number {
    return this.running.length;
  }
}
