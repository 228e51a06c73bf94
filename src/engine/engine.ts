// The engine: one async step loop around the pure core. Each step: apply aborts -> schedule() ->
// executor.execute(plan) -> updateFromOutput() -> output processor -> per-request queues that
// generate() drains. Idle, the loop awaits a wake-up (no polling). If the executor dies or a step
// fails, every in-flight request ends with finishReason "error" and new ones get EngineDeadError
// until attachExecutor() brings a new executor (the registry's supervisor calls it).

import { randomInt } from "node:crypto";

import {
  ConfigError,
  EngineDeadError,
  OverloadedError,
  PromptTooLongError,
  ValidationError,
} from "../errors.ts";
import type {
  Executor,
  ModelInfo,
  ModelRunnerOutput,
  SamplingSettings,
  SchedulerOutput,
} from "../executor/types.ts";
import { HfTokenizer } from "../tokenizer/tokenizer.ts";
import { AsyncQueue, deltasOf } from "./async-queue.ts";
import { EngineFront } from "./engine-front.ts";
import { type EngineOptions, type ResolvedEngineOptions, resolveEngineOptions } from "./engine-options.ts";
import { RequestState } from "./output/output-processor.ts";
import { PaddedScheduler } from "./padded/padded-scheduler.ts";
import type { EngineStats, GenerateRequest, GenerationParams, LlmEngine, RequestOutput } from "./protocol.ts";
import { Request } from "./request.ts";
import { contrastiveReservation, type EngineCoreOutput, Scheduler } from "./scheduler/scheduler.ts";

export type { EngineOptions } from "./engine-options.ts";

export interface CreateEngineArgs {
  executor: Executor;
  modelDir: string;
  options?: EngineOptions;
  /** An already-loaded tokenizer (tests); default: loaded from modelDir. */
  tokenizer?: HfTokenizer;
}

interface LiveRequest {
  state: RequestState;
  /** Where this request's deltas go (a generate() queue, or a start() caller's sink). */
  push: (out: RequestOutput) => void;
}

export async function createLlmEngine(args: CreateEngineArgs): Promise<Engine> {
  const tokenizer = args.tokenizer ?? HfTokenizer.fromDir(args.modelDir);
  const engine = new Engine(tokenizer, resolveEngineOptions(args.options));
  await engine.attachExecutor(args.executor);
  return engine;
}

export class Engine extends EngineFront implements LlmEngine {
  readonly options: ResolvedEngineOptions;
  private info: ModelInfo | null = null;
  private executor: Executor | null = null;
  /** The paged scheduler, or the padded one for rolling_batch=scheduler (same surface). */
  private scheduler: Scheduler | PaddedScheduler | null = null;
  private readonly live = new Map<string, LiveRequest>();
  private readonly pendingAborts = new Set<string>();
  /** Core outputs of the last step whose text cannot change the next plan: processed once it is sent. */
  private deferred: Array<[LiveRequest, EngineCoreOutput]> = [];
  /** Why the engine cannot take requests (null while healthy). */
  private deadReason: string | null = "The inference engine has no executor yet.";
  /** Bumped on every attach/death, so a stale loop or death callback does nothing. */
  private generation = 0;
  private wake: (() => void) | null = null;
  /** Set by setDeliveryGate: while closed, no new step is launched (the steps in flight still finish). */
  private gate: DeliveryGate | null = null;
  /** Outputs awaited in a row with no setImmediate turn between them (see awaitOutput). */
  private turnlessWaits = 0;
  private isShutDown = false;
  private readonly deathListeners: Array<(reason: string) => void> = [];
  private numPromptTokensTotal = 0;
  private numGenerationTokensTotal = 0;

  constructor(tokenizer: HfTokenizer, options: ResolvedEngineOptions) {
    super(tokenizer, options);
    this.options = options;
  }

  get modelInfo(): ModelInfo {
    if (this.info === null) throw new EngineDeadError(this.deadReason ?? undefined);
    return this.info;
  }

  get isAlive(): boolean {
    return this.deadReason === null;
  }

  /** Null while healthy, else why requests are refused. */
  get deathReason(): string | null {
    return this.deadReason;
  }

  /**
   * Loads a (new) executor: load, profile, initCache, then serve. Requests still in flight on a
   * previous executor are failed first. KV state and the prefix cache start empty.
   */
  async attachExecutor(executor: Executor): Promise<void> {
    if (this.isShutDown) throw new EngineDeadError("The inference engine is shut down.");
    if (this.deadReason === null) this.die("The executor was replaced.", this.generation, true);
    const gen = ++this.generation;
    const info = await executor.load();
    const profile = await executor.profile();
    const blockSize = profile.blockSize;
    const padded = this.options.batching === "padded";
    if (padded !== (profile.kvLayout === "padded")) {
      throw new ConfigError([
        padded
          ? "option.rolling_batch=scheduler needs an executor with padded sub-batches (the CPU executor has one); this executor pages its KV cache"
          : "this executor runs only padded sub-batches: use option.rolling_batch=scheduler",
      ]);
    }
    if (!padded && this.options.blockSize !== undefined && this.options.blockSize !== blockSize) {
      throw new ConfigError([
        `option.block_size is ${this.options.blockSize}, but the executor lays out KV blocks of ${blockSize} tokens`,
      ]);
    }
    const numBlocks = this.options.numBlocks ?? profile.numBlocks;
    if (numBlocks < 1)
      throw new ConfigError(["No KV cache block fits in memory: lower the model size or dtype"]);
    let maxModelLen = Math.min(info.maxModelLen, this.options.maxModelLen ?? Number.POSITIVE_INFINITY);
    if (numBlocks * blockSize < maxModelLen) {
      // One request alone must always fit, or it could wait forever; so the KV size caps the length.
      this.options.logger.warn(
        `KV cache holds ${numBlocks * blockSize} tokens, less than the model's ${maxModelLen}: max model length lowered`,
      );
      maxModelLen = numBlocks * blockSize;
    }
    const longest = contrastiveReservation(maxModelLen, profile.contrastiveChunk);
    if (profile.contrastivePositions !== undefined && profile.contrastivePositions < longest) {
      // Every request must fit alone, or a contrastive one could wait forever (the executor sizes its pool so).
      throw new ConfigError([
        `the executor keeps contrastive-search hidden states for ${profile.contrastivePositions} positions, fewer than one request of the max model length (${maxModelLen})`,
      ]);
    }
    await executor.initCache(numBlocks);
    executor.onDeath((err) => {
      if (this.generation === gen) this.die(`The executor died: ${err.message}`);
    });
    this.scheduler = padded
      ? new PaddedScheduler({
          maxNumSeqs: this.options.maxNumSeqs,
          maxNumBatchedTokens: this.options.maxNumBatchedTokens,
          numSlots: numBlocks * blockSize,
          maxModelLen,
          maxSparsity: this.options.maxSparsity,
          maxSplits: this.options.maxSplits,
          waitingSteps: this.options.waitingSteps,
        })
      : new Scheduler({
          maxNumSeqs: this.options.maxNumSeqs,
          maxNumBatchedTokens: this.options.maxNumBatchedTokens,
          blockSize,
          numBlocks,
          enablePrefixCaching: this.options.enablePrefixCaching,
          maxModelLen,
          waitingSteps: this.options.waitingSteps,
          mixPrefillAndDecode: this.options.enableChunkedPrefill,
          contrastivePositions: profile.contrastivePositions,
          contrastiveChunk: profile.contrastiveChunk,
        });
    this.executor = executor;
    this.info = { ...info, maxModelLen };
    this.deadReason = null;
    this.runLoop(gen).catch((err) => this.die(`The engine step failed: ${errorMessage(err)}`, gen));
  }

  /**
   * Called on every death (executor died, step failed), not on shutdown or attachExecutor; the
   * supervisor uses it to rebuild the executor and call attachExecutor.
   */
  onDeath(listener: (reason: string) => void): void {
    this.deathListeners.push(listener);
  }

  async *generate(request: GenerateRequest, signal?: AbortSignal): AsyncGenerator<RequestOutput> {
    const queue = new AsyncQueue<RequestOutput | Error>();
    this.submit(request, (out) => queue.push(out));
    yield* deltasOf(queue, () => this.abort(request.requestId), signal);
  }

  /**
   * generate() without an iterator: validates and enqueues the request (throwing what generate()'s first
   * iteration would reject with), then hands each delta to `sink` synchronously from the step loop, the last
   * one with finished=true. End it early with abort(). (The engine thread delivers outputs this way.)
   */
  start(request: GenerateRequest, sink: (out: RequestOutput) => void): void {
    this.submit(request, sink);
  }

  /**
   * Lets the consumer of the deltas hold the loop back: while gate.open() is false no new step is scheduled
   * (the executor's steps in flight still finish and are applied), and gate.wait() resolves when it opens.
   * The engine thread closes it while the HTTP thread has not taken the previous step's deltas, so a model
   * that steps faster than the server can write never lets undelivered deltas pile up.
   */
  setDeliveryGate(gate: DeliveryGate): void {
    this.gate = gate;
  }

  /** Ends a request now (finishReason "abort"); its KV blocks are freed at the next step. */
  abort(requestId: string): void {
    const live = this.live.get(requestId);
    if (live === undefined || live.state.finished) return;
    live.push(live.state.finish("abort"));
    this.live.delete(requestId);
    this.pendingAborts.add(requestId);
    this.wakeLoop();
  }

  stats(): EngineStats {
    const s = this.scheduler?.stats();
    return {
      numRunning: s?.numRunning ?? 0,
      numWaiting: s?.numWaiting ?? 0,
      kvCacheUsage: s?.kvCacheUsage ?? 0,
      numPreemptions: s?.numPreemptions ?? 0,
      numPromptTokensTotal: this.numPromptTokensTotal,
      numGenerationTokensTotal: this.numGenerationTokensTotal,
      prefixCacheHitRate: s && s.prefixCacheQueries > 0 ? s.prefixCacheHits / s.prefixCacheQueries : 0,
    };
  }

  async shutdown(): Promise<void> {
    if (this.isShutDown) return;
    this.isShutDown = true;
    const executor = this.executor;
    this.die("The inference engine is shutting down.");
    this.deadReason = "The inference engine is shut down.";
    this.executor = null;
    if (executor !== null) await executor.shutdown();
  }

  /** Validates and enqueues a request; throws the errors the server maps to 4xx/5xx. */
  private submit(request: GenerateRequest, push: (out: RequestOutput) => void): LiveRequest {
    if (this.deadReason !== null || this.scheduler === null || this.info === null) {
      throw new EngineDeadError(this.deadReason ?? undefined);
    }
    const { requestId, params } = request;
    if (this.live.has(requestId) || this.scheduler.getRequest(requestId) !== undefined) {
      throw new ValidationError(`A request with id ${requestId} is already running`, "requestId");
    }
    let ids = this.promptIds(request);
    if (params.truncate !== null && ids.length > params.truncate) ids = ids.slice(-params.truncate);
    const maxModelLen = this.info.maxModelLen;
    if (ids.length >= maxModelLen) throw new PromptTooLongError(ids.length, maxModelLen);
    if (this.scheduler.numWaiting >= this.options.jobQueueSize) {
      throw new OverloadedError(
        `The job queue is full (job_queue_size=${this.options.jobQueueSize}); retry later`,
      );
    }
    const vocab = this.info.vocabSize;
    for (const id of Object.keys(params.logitBias)) {
      if (Number(id) >= vocab) {
        throw new ValidationError(
          `\`logit_bias\` token id ${id} is outside the vocabulary (size ${vocab})`,
          "logit_bias",
        );
      }
    }
    const seed = params.seed ?? randomInt(0, 2 ** 31 - 1);
    const state = new RequestState({ requestId, promptTokenIds: ids, params, seed }, this.tokenizer);
    const req = new Request({
      reqId: requestId,
      promptTokenIds: ids,
      sampling: this.samplingSettings(params, seed),
      // A request may not outgrow the model: generation stops at maxModelLen with finish reason "length".
      maxTokens: Math.min(params.maxNewTokens, maxModelLen - ids.length),
      stopTokenIds: params.stopTokenIds,
    });
    this.scheduler.addRequest(req);
    const live: LiveRequest = { state, push };
    this.live.set(requestId, live);
    this.numPromptTokensTotal += ids.length;
    this.wakeLoop();
    return live;
  }

  private promptIds(request: GenerateRequest): number[] {
    const { prompt } = request;
    if (typeof prompt === "string") {
      if (prompt.length === 0) throw new ValidationError("`inputs` must be a non-empty string", "inputs");
      return this.tokenizer.encode(prompt);
    }
    const vocab = this.info!.vocabSize;
    const ids = prompt.tokenIds;
    if (
      !Array.isArray(ids) ||
      ids.length === 0 ||
      !ids.every((t) => Number.isInteger(t) && t >= 0 && t < vocab)
    ) {
      throw new ValidationError(
        `prompt token ids must be a non-empty list of integers in [0, ${vocab})`,
        "prompt",
      );
    }
    return [...ids];
  }

  private samplingSettings(p: GenerationParams, seed: number): SamplingSettings {
    const eos = new Set([...this.info!.eosTokenIds, ...this.tokenizer.eosTokenIds]);
    return {
      strategy: p.strategy,
      temperature: p.temperature,
      topK: p.topK,
      topP: p.topP,
      typicalP: p.typicalP,
      minP: p.minP,
      repetitionPenalty: p.repetitionPenalty,
      presencePenalty: p.presencePenalty,
      frequencyPenalty: p.frequencyPenalty,
      logitBias: p.logitBias,
      seed,
      penaltyAlpha: p.penaltyAlpha,
      numTopLogprobs: p.topNTokens,
      promptLogprobs: p.decoderInputDetails,
      minTokens: p.minNewTokens,
      eosTokenIds: [...eos],
      ignoreEos: p.ignoreEos,
    };
  }

  /**
   * Each step's outputs are pushed to the request queues and the next plan is sent before the loop
   * yields, so consumers (detokenized deltas -> HTTP formatting and socket writes) run while the executor
   * computes that next step instead of between steps. With an executor that takes several steps at once
   * (maxStepsInFlight > 1, paged scheduler only), the next plan goes out before the previous step's output
   * is applied, so the device never waits for this loop: a stop found in an output then costs that
   * request one discarded step. What could change a plan is applied as soon as it is known: token stops
   * and stop strings here; a client's abort lands at the next plan.
   */
  private async runLoop(gen: number): Promise<void> {
    const depth = this.scheduler instanceof Scheduler ? Math.max(1, this.executor!.maxStepsInFlight ?? 1) : 1;
    const inflight: InFlightStep[] = [];
    // Past two, a step goes out only behind decode steps: their short GPU time is what a deeper pipeline hides
    // the host round trip in, while a prompt step already gives it tens of ms, and a third plan sent during one
    // only makes the executor launch it while the prompt's first token is on its way back (idle TTFT +~1 ms).
    const room = () => inflight.length < (depth > 2 && inflight.some((s) => !s.decodeOnly) ? 2 : depth);
    while (this.generation === gen) {
      const sched = this.scheduler!;
      if (this.pendingAborts.size > 0) {
        sched.finishRequests(this.pendingAborts, "abort");
        this.pendingAborts.clear();
      }
      const wantsStep = room() && sched.hasPendingWork;
      const gateOpen = this.gate === null || this.gate.open();
      if (wantsStep && !gateOpen && (inflight.length === 0 || !inflight[0].settled)) {
        // The consumer is behind: wait for it, or for the oldest step's output if that comes first.
        await this.waitForGate(inflight[0]?.output);
        continue;
      }
      if (wantsStep && gateOpen) {
        const plan = sched.schedule();
        if (
          plan.totalNumScheduledTokens > 0 ||
          plan.finishedReqIds.length > 0 ||
          plan.preemptedReqIds.length > 0
        ) {
          const output = this.executor!.execute(plan);
          const entry: InFlightStep = { plan, output, settled: false, decodeOnly: isDecodeOnly(plan) };
          const settle = () => {
            entry.settled = true;
          };
          // Awaited below; the rejection handler also keeps one that lands meanwhile from counting as unhandled.
          output.then(settle, settle);
          inflight.push(entry);
          continue;
        }
        if (inflight.length === 0 && sched.hasUnfinishedRequests) {
          // Cannot happen while one request always fits the KV cache; fail loudly rather than spin.
          throw new Error("the scheduler could not schedule any waiting request");
        }
        // Everything runnable waits for an output in flight.
      }
      if (inflight.length === 0) {
        this.processDeferred();
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
        continue;
      }
      const step = inflight.shift()!;
      let output: ModelRunnerOutput;
      try {
        this.processDeferred();
        output = await this.awaitOutput(step);
      } catch (err) {
        if (this.generation === gen) this.die(`The executor failed: ${errorMessage(err)}`, gen);
        return;
      }
      if (this.generation !== gen) return;
      this.deliver(sched, step.plan, output);
    }
  }

  /** Resolves when the delivery gate opens, the loop is woken (a request, an abort, a death) or `output` settles. */
  private waitForGate(output: Promise<unknown> | undefined): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => resolve();
      this.wake = done;
      this.gate!.wait().then(done);
      output?.then(done, done);
    });
  }

  /**
   * A step's output, with HTTP and timers let run meanwhile. An output still on its way is awaited as it is,
   * which resumes the loop right after the I/O callback that delivers it; a setImmediate turn first would wait
   * for every other pending I/O callback, so a burst of arriving requests (~0.3 ms of intake each) would hold
   * the next step back until all were taken in (measured ~50 ms before a 256-request burst's first full step
   * on the H100 server). An output there already (an in-process executor settles at once) gets a setImmediate
   * turn first, and so does every MAX_TURNLESS_WAITS-th output that arrived with no check phase in between,
   * so that no executor can keep the loop from letting the server run.
   */
  private async awaitOutput(step: InFlightStep): Promise<ModelRunnerOutput> {
    await null; // the settled flag of an output that is already there is set by now
    if (step.settled || this.turnlessWaits >= MAX_TURNLESS_WAITS) {
      this.turnlessWaits = 0;
      await yieldToEventLoop();
      return step.output;
    }
    let turned = false;
    const check = setImmediate(() => {
      turned = true;
    });
    try {
      return await step.output;
    } finally {
      clearImmediate(check);
      this.turnlessWaits = turned ? 0 : this.turnlessWaits + 1;
    }
  }

  /**
   * Applies a step's output: token bookkeeping now; detokenization and the queues now only for requests
   * with stop strings (their text decides whether they run next step), later for the others.
   */
  private deliver(
    sched: Scheduler | PaddedScheduler,
    plan: SchedulerOutput,
    output: ModelRunnerOutput,
  ): void {
    for (const core of sched.updateFromOutput(plan, output)) {
      this.numGenerationTokensTotal += core.newTokenIds.length;
      const live = this.live.get(core.reqId);
      if (live === undefined) continue; // aborted during the step; freed at the next one
      if (!live.state.canStopOnText) {
        this.deferred.push([live, core]);
        continue;
      }
      if (this.emit(live, core)) sched.finishRequests([core.reqId], "stop_sequence");
    }
  }

  private processDeferred(): void {
    const deferred = this.deferred;
    if (deferred.length === 0) return;
    this.deferred = [];
    for (const [live, core] of deferred) this.emit(live, core);
  }

  /** Turns one core output into a client delta; returns true when a stop string ended the request. */
  private emit(live: LiveRequest, core: EngineCoreOutput): boolean {
    const { output: out, stopped } = live.state.process(core);
    // A prefill chunk (prompt logprobs only) has nothing for the client yet.
    if (out.finished || out.tokens.length > 0 || out.textDelta !== "") live.push(out);
    if (out.finished) this.live.delete(core.reqId);
    return stopped;
  }

  /** Fails every in-flight request and refuses new ones until attachExecutor(). */
  private die(reason: string, gen = this.generation, replaced = false): void {
    if (gen !== this.generation) return;
    this.processDeferred(); // what the last step computed still reaches its clients
    this.generation++;
    this.deadReason = reason;
    for (const live of this.live.values()) live.push(live.state.finish("error", reason));
    this.live.clear();
    this.pendingAborts.clear();
    this.scheduler = null;
    this.wakeLoop();
    if (this.isShutDown || replaced) return;
    this.options.logger.warn(reason);
    for (const l of this.deathListeners) l(reason);
  }

  private wakeLoop(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }
}

/** A consumer's hold on the step loop (Engine.setDeliveryGate). */
export interface DeliveryGate {
  open(): boolean;
  /** Resolves once open() is true again. */
  wait(): Promise<void>;
}

/** A step sent to the executor; settled once its output promise has resolved or rejected. */
interface InFlightStep {
  plan: SchedulerOutput;
  output: Promise<ModelRunnerOutput>;
  settled: boolean;
  /** Every request in the plan computes one token (no prompt, no prompt chunk). */
  decodeOnly: boolean;
}

function isDecodeOnly(plan: SchedulerOutput): boolean {
  if (plan.scheduledNewReqs.length > 0) return false;
  for (const id in plan.numScheduledTokens) if (plan.numScheduledTokens[id] !== 1) return false;
  return true;
}

/** Outputs in a row that may arrive with no setImmediate turn between them before the loop takes one. */
const MAX_TURNLESS_WAITS = 16;

/** Lets I/O callbacks and timers run (a bare setImmediate; node:timers/promises' is ~20x slower). */
function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
