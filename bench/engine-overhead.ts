// Benchmark harness (not a test): the TypeScript side's cost per engine step at batch 256, with an
// executor that answers at once (one token per request per step, like a model that takes no time).
// The Python executor's wire work on the Node side (encodeFrame of the plan, FrameDecoder of a reply
// shaped like python/lmi_executor/runner.py's) is done inside that executor and timed apart.
//
//   npx tsx bench/engine-overhead.ts engine [--requests 256 --input 512 --output 256 --runs 3]
//   npx tsx bench/engine-overhead.ts http   (the real app on loopback; streaming clients in a child process)
//   npx tsx bench/engine-overhead.ts protocol   (encode a 256-request decode plan, decode its reply)
//   --in-flight 2: the executor takes two steps at once (pipelined steps, as the Python executor does),
//   running them in order.
//   --step-ms 17: the executor answers after 17 ms (the H100's decode step), so what Node does while
//   the model runs is hidden, and only the serial part shows up in the step time. --us-per-token 28 adds
//   model time per scheduled token (prefill steps of ~240 ms); --fetch-client reads the streams the way
//   bench/gpu-http-bench.mjs does.
//
// Per-step Node time is the gap from an execute() reply being ready to the next execute() call, over the
// steps where every request decodes (batch = --requests): with --step-ms 0 it holds everything Node does
// for a step (schedule(), updateFromOutput(), output processing, delivery to the consumers, HTTP
// formatting and socket writes, event-loop turns); with a model time, only what the model waits for.
// Phases are timed by wrapping prototype methods, so the engine itself carries no timing code.
// http mode also prints the burst's start: when requests 1, 16, 64, 128 and 256 reached the server (the
// "request" event) and the scheduler (addRequest), and the first execute() calls with their new requests
// and tokens, in ms after the first arrival; and its end: when the clients saw their streams end, in ms after
// the last step's reply was ready.

import { fork } from "node:child_process";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { parseArgs } from "node:util";
import { AsyncQueue } from "../src/engine/async-queue.ts";
import { Engine } from "../src/engine/engine.ts";
import { resolveEngineOptions } from "../src/engine/engine-options.ts";
import { RequestState } from "../src/engine/output/output-processor.ts";
import { Scheduler } from "../src/engine/scheduler/scheduler.ts";
import { encodeFrame, FrameDecoder } from "../src/executor/python/framing.ts";
import type {
  CacheProfile,
  Executor,
  ExecutorHealth,
  ModelInfo,
  ModelRunnerOutput,
  SchedulerOutput,
} from "../src/executor/types.ts";
import { ModelRegistry } from "../src/registry/registry.ts";
import { DEFAULT_SERVING_OPTIONS } from "../src/registry/types.ts";
import { createApp } from "../src/server/app.ts";
import { DEFAULT_HTTP_OPTIONS, type ServerContext } from "../src/server/context.ts";
import { Logger } from "../src/server/log.ts";
import { ServerMetrics } from "../src/server/metrics.ts";
import { HfTokenizer } from "../src/tokenizer/tokenizer.ts";

const VOCAB = 128256;
const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    requests: { type: "string", default: "256" },
    input: { type: "string", default: "512" },
    output: { type: "string", default: "256" },
    runs: { type: "string", default: "3" },
    port: { type: "string" },
    "step-ms": { type: "string", default: "0" },
    "in-flight": { type: "string", default: "1" },
    /** Extra model time per scheduled token (28 us makes an 8,192-token prefill step ~240 ms, as on the H100). */
    "us-per-token": { type: "string", default: "0" },
    /** Clients like bench/gpu-http-bench.mjs's (fetch, TextDecoder, JSON.parse of every line). */
    "fetch-client": { type: "boolean", default: false },
  },
});
const N = Number(values.requests);
const IN = Number(values.input);
const OUT = Number(values.output);
/** Model time per step (0: answer at once; 17 models the H100's decode step at batch 256). */
const STEP_MS = Number(values["step-ms"]);
/** Steps the executor accepts at once (the Python executor's pipelined steps: 2). */
const IN_FLIGHT = Number(values["in-flight"]);
const US_PER_TOKEN = Number(values["us-per-token"]);

/** scripts/gpu/make-dummy-model-dir.py's tokenizer: a 128,256-word WordLevel vocabulary, w0..w128255. */
function wordTokenizer(): HfTokenizer {
  const vocab: Record<string, number> = {};
  for (let i = 0; i < VOCAB; i++) vocab[`w${i}`] = i;
  const special = (id: number) => ({
    id,
    content: `w${id}`,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  return new HfTokenizer({
    tokenizerJson: {
      version: "1.0",
      truncation: null,
      padding: null,
      added_tokens: [special(128000), special(128001)],
      normalizer: null,
      pre_tokenizer: { type: "WhitespaceSplit" },
      post_processor: null,
      decoder: null,
      model: { type: "WordLevel", vocab, unk_token: "w0" },
    },
    tokenizerConfig: { bos_token: "w128000", eos_token: "w128001" },
  });
}

/** Accumulated milliseconds per phase, plus per-step gaps. */
class Timings {
  readonly phases = new Map<string, number>();
  stepGaps: number[] = [];
  /** execute() call to the next call: the model's time plus whatever Node made it wait. */
  periods: number[] = [];
  decodeSteps = 0;
  add(name: string, ms: number): void {
    this.phases.set(name, (this.phases.get(name) ?? 0) + ms);
  }
  reset(): void {
    this.phases.clear();
    this.stepGaps = [];
    this.periods = [];
    this.decodeSteps = 0;
  }
}
const T = new Timings();
/** Only steps where every request decodes one token count (set by the executor per step). */
let inDecodeStep = false;

function wrap<O extends object>(proto: O, method: keyof O & string, phase: string): void {
  const orig = proto[method] as unknown as (...a: unknown[]) => unknown;
  (proto as Record<string, unknown>)[method] = function (this: unknown, ...a: unknown[]) {
    if (!inDecodeStep) return orig.apply(this, a);
    const t0 = performance.now();
    const r = orig.apply(this, a);
    T.add(phase, performance.now() - t0);
    return r;
  };
}
wrap(Scheduler.prototype, "schedule", "schedule()");
wrap(Scheduler.prototype, "updateFromOutput", "updateFromOutput()");
wrap(RequestState.prototype, "process", "output processing (detokenize, stops)");
wrap(AsyncQueue.prototype, "push", "queue push");
wrap(http.ServerResponse.prototype, "write", "res.write()");

/** The burst's start (http mode): when each request reached the server and the scheduler, and the first steps. */
const burst = {
  arrivals: [] as number[],
  admitted: [] as number[],
  steps: [] as [number, number, number][],
  /** Wall-clock ms (performance.timeOrigin + now, comparable across processes) of the last step's reply. */
  lastReplyAt: 0,
};
const addRequest = Scheduler.prototype.addRequest;
Scheduler.prototype.addRequest = function (this: Scheduler, ...a: Parameters<Scheduler["addRequest"]>) {
  burst.admitted.push(performance.now());
  return addRequest.apply(this, a);
};
function reportStart(): void {
  const t0 = burst.arrivals[0];
  if (t0 === undefined) return;
  const at = (xs: number[], i: number) => (xs[Math.min(i, xs.length - 1)] - t0).toFixed(1);
  const pick = [0, 15, 63, 127, 255];
  console.log(`  burst start, ms after the first request reached the server:`);
  console.log(`    arrivals #${pick.map((i) => `${i + 1} ${at(burst.arrivals, i)}`).join(", #")}`);
  console.log(`    admitted #${pick.map((i) => `${i + 1} ${at(burst.admitted, i)}`).join(", #")}`);
  const steps = burst.steps
    .slice(0, 8)
    .map(([t, reqs, tok]) => `${(t - t0).toFixed(1)} (${reqs} new, ${tok} tok)`);
  console.log(`    first execute() calls: ${steps.join(", ")}`);
}

/** Answers every step at once with one token per request that reached its end; does the wire work. */
class InstantExecutor implements Executor {
  readonly maxStepsInFlight = IN_FLIGHT;
  /** With a model time, when the modelled device finishes the steps it already has (they run in order). */
  private busyUntil = 0;
  private readonly numTokens = new Map<string, number>();
  private lastCall = 0;
  private lastCallStart = 0;
  private wasDecode = false;
  private seed = 1;
  private nextId = 1;
  private readonly decoder = new FrameDecoder();

  async load(): Promise<ModelInfo> {
    return {
      architecture: "LlamaForCausalLM",
      modelType: "llama",
      vocabSize: VOCAB,
      maxModelLen: 4096,
      eosTokenIds: [128001],
      bosTokenId: 128000,
      dtype: "bfloat16",
    };
  }
  async profile(): Promise<CacheProfile> {
    return { numBlocks: 27_455, blockSize: 16, bytesPerBlock: 131_072 };
  }
  async initCache(): Promise<void> {}
  async health(): Promise<ExecutorHealth> {
    return { ok: true };
  }
  async shutdown(): Promise<void> {}
  onDeath(): void {}

  execute(plan: SchedulerOutput): Promise<ModelRunnerOutput> {
    const now = performance.now();
    if (burst.steps.length < 8)
      burst.steps.push([now, plan.scheduledNewReqs.length, plan.totalNumScheduledTokens]);
    if (this.wasDecode) {
      T.stepGaps.push(now - this.lastCall);
      T.periods.push(now - this.lastCallStart);
    }
    this.lastCall = now;
    this.lastCallStart = now;
    for (const id of plan.finishedReqIds) this.numTokens.delete(id);
    for (const r of plan.scheduledNewReqs) this.numTokens.set(r.reqId, r.promptTokenIds.length);
    const out: ModelRunnerOutput = {
      stepId: plan.stepId,
      sampledTokenIds: {},
      logprobs: {},
      promptLogprobs: {},
    };
    const computedAfter = new Map<string, number>();
    for (const r of plan.scheduledNewReqs) computedAfter.set(r.reqId, r.numComputedTokens);
    for (const r of plan.scheduledCachedReqs) computedAfter.set(r.reqId, r.numComputedTokens);
    let numDecoding = 0;
    for (const [reqId, n] of Object.entries(plan.numScheduledTokens)) {
      const total = this.numTokens.get(reqId)!;
      if ((computedAfter.get(reqId) ?? 0) + n < total) continue; // a prompt chunk: nothing sampled yet
      if (n === 1) numDecoding++;
      this.seed = (this.seed * 1103515245 + 12345) % 2 ** 31;
      out.sampledTokenIds[reqId] = [1000 + (this.seed % 120_000)];
      out.logprobs[reqId] = [{ logprob: -1.5, top: [] }];
      this.numTokens.set(reqId, total + 1);
    }
    const isDecode = numDecoding === N && plan.scheduledNewReqs.length === 0;
    this.wasDecode = isDecode;
    inDecodeStep = isDecode;
    if (isDecode) T.decodeSteps++;
    // The Node side of the Python executor protocol: encode the plan, decode a reply frame. The reply
    // bytes are built outside the timed region (the Python rank builds them).
    const t0 = performance.now();
    const sent = encodeFrame({ id: this.nextId, type: "execute", plan });
    const t1 = performance.now();
    const replyBytes = encodeFrame({ id: this.nextId++, ok: true, result: out });
    const t2 = performance.now();
    const [frame] = this.decoder.push(replyBytes);
    const result = (frame.header as { result: ModelRunnerOutput }).result;
    const t3 = performance.now();
    if (isDecode) {
      T.add("protocol: encode plan", t1 - t0);
      T.add("protocol: decode reply", t3 - t2);
      T.add("(plan bytes)", sent.length);
    }
    if (STEP_MS <= 0) {
      // The executor's own time (building the reply) is not Node's overhead: shift the step's start.
      this.lastCall += t2 - t1 + (performance.now() - t3);
      burst.lastReplyAt = performance.timeOrigin + performance.now();
      return Promise.resolve(result);
    }
    const start = Math.max(performance.now(), this.busyUntil);
    this.busyUntil = start + STEP_MS + (US_PER_TOKEN * plan.totalNumScheduledTokens) / 1000;
    return new Promise((resolve) =>
      setTimeout(() => {
        this.lastCall = performance.now(); // the gap counts from the reply being ready
        burst.lastReplyAt = performance.timeOrigin + this.lastCall;
        resolve(result);
      }, this.busyUntil - performance.now()),
    );
  }
}

function prompt(seed: number): number[] {
  let s = seed;
  return Array.from({ length: IN }, () => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return 1000 + (s % 120_000);
  });
}

function report(label: string, wallMs: number, tokens: number): Record<string, number> {
  const gaps = [...T.stepGaps].sort((a, b) => a - b);
  const steps = gaps.length;
  const row: Record<string, number> = {
    wallMs: Math.round(wallMs),
    outputTokens: tokens,
    decodeSteps: steps,
    stepMedianMs: gaps[Math.floor(steps / 2)] ?? Number.NaN,
    stepMeanMs: gaps.reduce((a, b) => a + b, 0) / Math.max(1, steps),
    stepPeriodMeanMs: T.periods.reduce((a, b) => a + b, 0) / Math.max(1, T.periods.length),
    decodeTokPerS: Math.round((N * 1000 * T.periods.length) / T.periods.reduce((a, b) => a + b, 0)),
    outputTokPerS: Math.round(tokens / (wallMs / 1000)),
  };
  // The longest step periods and where they fell (a Node pause shows up as one step far above the rest).
  const worst = T.periods
    .map((ms, i) => [ms, i] as const)
    .sort((a, b) => b[0] - a[0])
    .slice(0, 3);
  worst.forEach(([ms, i], k) => {
    row[`worstPeriod${k + 1}Ms (decode step ${i})`] = ms;
  });
  for (const [k, v] of T.phases) row[k] = v / Math.max(1, T.decodeSteps);
  const known = [...T.phases]
    .filter(([k]) => !k.startsWith("("))
    .reduce((a, [, v]) => a + v / Math.max(1, T.decodeSteps), 0);
  // With a model time, phases after the next execute() call overlap it, so "rest" is only meaningful at 0.
  if (STEP_MS <= 0) row["rest (delivery, formatting, event loop)"] = row.stepMeanMs - known;
  console.log(
    `\n${label}: Node time per decode step at batch ${N}, model ${STEP_MS} ms (ms, mean over ${T.decodeSteps} steps)`,
  );
  for (const [k, v] of Object.entries(row))
    console.log(`  ${k.padEnd(42)} ${Number.isInteger(v) ? v : v.toFixed(3)}`);
  return row;
}

async function newEngine(): Promise<Engine> {
  const engine = new Engine(
    tokenizer,
    resolveEngineOptions({
      maxNumSeqs: 256,
      maxNumBatchedTokens: 8192,
      maxModelLen: 4096,
      jobQueueSize: 1000,
    }),
  );
  await engine.attachExecutor(new InstantExecutor());
  return engine;
}

async function engineRun(run: number): Promise<void> {
  const engine = await newEngine();
  T.reset();
  const t0 = performance.now();
  let tokens = 0;
  await Promise.all(
    Array.from({ length: N }, async (_, i) => {
      const params = engine.validateParameters({ max_new_tokens: OUT, ignore_eos: true }).params;
      for await (const out of engine.generate({
        requestId: `r${run}-${i}`,
        prompt: { tokenIds: prompt(i + 1) },
        params,
      }))
        tokens += out.tokens.length;
    }),
  );
  report(`engine run ${run}`, performance.now() - t0, tokens);
  await engine.shutdown();
}

async function httpRun(run: number): Promise<void> {
  const engine = await newEngine();
  const logger = new Logger({ level: "warn", sink: { write: () => {} } });
  const registry: ModelRegistry = new ModelRegistry({
    loader: async () => ({
      backend: {
        kind: "engine",
        engine,
        validateParameters: (raw) => engine.validateParameters(raw).params,
      },
      options: { ...DEFAULT_SERVING_OPTIONS },
      close: () => engine.shutdown(),
    }),
    logger,
  });
  const metrics = new ServerMetrics({ version: "bench", modelRegistry: () => registry });
  const ctx: ServerContext = { registry, logger, metrics, http: { ...DEFAULT_HTTP_OPTIONS } };
  await registry.register({ name: "m8b", url: "/models/m8b", overrides: {} }, { loadedAtStartup: true })
    .ready;
  const app = createApp(ctx);
  await app.listen({ port: 0, host: "127.0.0.1" });
  const port = (app.server.address() as AddressInfo).port;
  app.server.prependListener("request", () => burst.arrivals.push(performance.now()));
  T.reset();
  burst.arrivals = [];
  burst.admitted = [];
  burst.steps = [];
  const t0 = performance.now();
  const args = [
    "client",
    "--port",
    String(port),
    "--requests",
    String(N),
    "--input",
    String(IN),
    "--output",
    String(OUT),
  ];
  const child = fork(process.argv[1], args, {
    execArgv: process.execArgv,
  });
  let clientCpuMs = 0;
  let medianTtftMs = Number.NaN;
  let ends: number[] = [];
  const tokens = await new Promise<number>((resolve, reject) => {
    child.on("message", (m) => {
      clientCpuMs = (m as { clientCpuMs: number }).clientCpuMs;
      medianTtftMs = (m as { medianTtftMs: number }).medianTtftMs;
      ends = (m as { ends: number[] }).ends;
      resolve((m as { tokens: number }).tokens);
    });
    child.on("exit", (code) => code !== 0 && reject(new Error(`client exited ${code}`)));
  });
  const row = report(`http run ${run}`, performance.now() - t0, tokens);
  // What the clients' process spent per step, over the whole run: a client slower than the server
  // caps the throughput it measures.
  const perStep = clientCpuMs / (row.decodeSteps + (IN * N) / 8192);
  console.log(`  ${"client CPU per step (whole run)".padEnd(42)} ${perStep.toFixed(3)}`);
  console.log(`  ${"median TTFT (http.request clients)".padEnd(42)} ${medianTtftMs.toFixed(1)}`);
  reportStart();
  // The burst's end: when the clients saw their responses end, after the last step's reply was ready.
  const after = ends.map((t) => t - burst.lastReplyAt).sort((a, b) => a - b);
  const q = (f: number) => after[Math.min(after.length - 1, Math.floor(f * after.length))].toFixed(1);
  console.log(
    `  burst end, ms after the last step's reply: responses ended first ${q(0)}, median ${q(0.5)}, last ${q(1)}`,
  );
  await app.close();
  await engine.shutdown();
}

/** The clients, in their own process so their parsing is not Node-side server time. */
async function clients(): Promise<void> {
  const port = Number(values.port);
  const agent = new http.Agent({ keepAlive: true, maxSockets: N });
  const ttfts: number[] = [];
  const ends: number[] = [];
  const t0 = performance.now();
  const one = (i: number) =>
    new Promise<number>((resolve, reject) => {
      const body = completionBody(i);
      const req = http.request(
        {
          port,
          host: "127.0.0.1",
          method: "POST",
          path: "/v1/completions",
          agent,
          headers: { "content-type": "application/json" },
        },
        (res) => {
          let tail = "";
          res.setEncoding("utf8");
          res.on("data", (c: string) => {
            if (tail === "") ttfts.push(performance.now() - t0);
            tail = (tail + c).slice(-600);
          });
          res.on("end", () => {
            ends.push(performance.timeOrigin + performance.now());
            const m = /"completion_tokens":(\d+)/.exec(tail);
            resolve(m ? Number(m[1]) : 0);
          });
        },
      );
      req.on("error", reject);
      req.end(body);
    });
  const cpu0 = process.cpuUsage();
  const counts = await Promise.all(
    Array.from({ length: N }, (_, i) => (values["fetch-client"] ? fetchOne(i, ends) : one(i))),
  );
  const cpu = process.cpuUsage(cpu0);
  ttfts.sort((a, b) => a - b);
  const medianTtftMs = ttfts[Math.floor(ttfts.length / 2)] ?? Number.NaN;
  process.send!({
    tokens: counts.reduce((a, b) => a + b, 0),
    clientCpuMs: (cpu.user + cpu.system) / 1000,
    medianTtftMs,
    ends,
  });
  agent.destroy();
}

/** The burst's request i: a streaming greedy completion of OUT tokens, usage in the last chunk. */
function completionBody(i: number): string {
  return JSON.stringify({
    model: "m8b",
    prompt: prompt(i + 1),
    max_tokens: OUT,
    temperature: 0,
    ignore_eos: true,
    stream: true,
    stream_options: { include_usage: true },
  });
}

/** One stream read the way bench/gpu-http-bench.mjs reads it, to price that client. */
async function fetchOne(i: number, ends: number[]): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${values.port}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: completionBody(i),
  });
  let tokens = 0;
  let buf = "";
  const dec = new TextDecoder();
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buf += dec.decode(chunk, { stream: true });
    let nl = buf.indexOf("\n");
    while (nl >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      nl = buf.indexOf("\n");
      if (!line.startsWith("data:")) continue;
      const data = line.slice(5).trim();
      if (data === "[DONE]") continue;
      const msg = JSON.parse(data);
      if (msg.usage) tokens = msg.usage.completion_tokens;
    }
  }
  ends.push(performance.timeOrigin + performance.now());
  return tokens;
}

/** The wire cost alone: a 256-request decode plan (as the scheduler builds it) and its reply. */
function protocolBench(): void {
  const reqIds = Array.from({ length: N }, (_, i) => `${Math.random().toString(36).slice(2, 10)}-${i}`);
  const plan: SchedulerOutput = {
    stepId: 300,
    scheduledNewReqs: [],
    scheduledCachedReqs: reqIds.map((reqId, i) => ({
      reqId,
      newBlockIds: i % 16 === 0 ? [10_000 + i] : [],
      numComputedTokens: IN + 100,
      resumedFromPreemption: false,
    })),
    numScheduledTokens: Object.fromEntries(reqIds.map((id) => [id, 1])),
    totalNumScheduledTokens: N,
    finishedReqIds: [],
    preemptedReqIds: [],
  };
  const out: ModelRunnerOutput = {
    stepId: 300,
    sampledTokenIds: Object.fromEntries(reqIds.map((id, i) => [id, [1000 + i * 37]])),
    logprobs: Object.fromEntries(reqIds.map((id) => [id, [{ logprob: -1.234567, top: [] }]])),
    promptLogprobs: {},
  };
  const reply = encodeFrame({ id: 7, ok: true, result: out });
  const dec = new FrameDecoder();
  const iters = 2000;
  const best = { enc: Number.POSITIVE_INFINITY, dec: Number.POSITIVE_INFINITY };
  for (let round = 0; round < 5; round++) {
    let t0 = performance.now();
    for (let i = 0; i < iters; i++) encodeFrame({ id: i, type: "execute", plan });
    best.enc = Math.min(best.enc, (performance.now() - t0) / iters);
    t0 = performance.now();
    for (let i = 0; i < iters; i++) dec.push(reply);
    best.dec = Math.min(best.dec, (performance.now() - t0) / iters);
  }
  const planBytes = encodeFrame({ id: 1, type: "execute", plan }).length;
  console.log(
    `protocol, ${N}-request decode step (best of 5 x ${iters}): encode plan ${(best.enc * 1000).toFixed(1)} us ` +
      `(${planBytes} bytes), decode reply ${(best.dec * 1000).toFixed(1)} us (${reply.length} bytes)`,
  );
}

const tokenizer =
  positionals[0] === "client" || positionals[0] === "protocol" ? (null as never) : wordTokenizer();
const mode = positionals[0] ?? "engine";
const runs = Number(values.runs);
if (mode === "client") await clients();
else if (mode === "protocol") protocolBench();
else {
  for (let r = 0; r < runs; r++) {
    if (mode === "engine" || mode === "both") await engineRun(r);
    if (mode === "http" || mode === "both") await httpRun(r);
  }
}
