// The Executor backed by Python ranks (python/lmi_executor): listens on a private Unix socket, starts the
// ranks through RankSupervisor, waits for rank 0's hello within startupTimeoutMs, then relays calls.
// Invariants: replies come in request order; execute() calls may overlap (up to maxStepsInFlight, when
// rank 0 says it launches steps ahead: capability "pipelined-steps"), every other call runs alone; a
// rank's death rejects every pending call with ExecutorError and fires onDeath once; shutdown() leaves
// no process or socket behind.
import { appendFileSync, mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ConfigError, ExecutorError } from "../../errors.ts";
import type {
  CacheProfile,
  Executor,
  ExecutorHealth,
  ModelInfo,
  ModelRunnerOutput,
  SchedulerOutput,
} from "../types.ts";
import { encodeFrame, FrameDecoder } from "./framing.ts";
import {
  type HelloResult,
  type InitCacheResult,
  type LoadResult,
  PROTOCOL_VERSION,
  type PythonExecutorOptionsWire,
  type Reply,
  type RequestMessage,
  type ResultByType,
} from "./protocol.ts";
import { RankSupervisor } from "./supervisor.ts";

/** Execute calls the engine keeps in flight when the executor allows it (PythonExecutorImpl.stepsInFlight). */
const DEFAULT_STEPS_IN_FLIGHT = 3;

export interface PythonExecutorOptions {
  modelDir: string;
  /** Interpreter with PyTorch; on Debian CI /usr/bin/python3 (the pyenv python3 first on PATH has none). */
  pythonExecutable?: string;
  /** Folder holding the lmi_executor package; defaults to this repository's python/. */
  pythonPath?: string;
  tensorParallelDegree?: number;
  mpiMode?: boolean;
  mpirunExecutable?: string;
  /** load_on_devices: GPU indices, rank r on loadOnDevices[r]. */
  loadOnDevices?: number[];
  /** int8: weight-only int8 projections (per-row scales, our Triton kernel), bf16 activations. */
  dtype?: "auto" | "fp16" | "bf16" | "fp32" | "int8";
  /** option.quantize: bitsandbytes8 / bitsandbytes / dynamic_int8 select weight-only int8; others are refused. */
  quantize?: string;
  loadFormat?: "auto" | "dummy";
  /** option.checkpoint: a tensor-parallel checkpoint JSON (or a folder holding ds_inference_config.json), relative
   *  to modelDir unless absolute; re-sharded at load to tensorParallelDegree (docs/gpu-executor.md). */
  checkpoint?: string;
  /** option.training_mp_size: the degree the checkpoint was saved at; must equal its tp_size (unset: taken from it). */
  trainingMpSize?: number;
  enableCudaGraph?: boolean;
  /** Fraction of the GPU's memory the executor may use in total (weights + activations + KV cache). */
  gpuMemoryUtilization?: number;
  /** option.kv_cache_dtype: auto (the model's dtype), fp8 / fp8_e4m3, bf16, fp16, fp32. */
  kvCacheDtype?: string;
  /** Bound on prompt + generated tokens (option.max_model_len / max_tokens / n_positions); 0 = model's own. */
  maxModelLen?: number;
  blockSize?: number;
  maxNumSeqs?: number;
  maxNumBatchedTokens?: number;
  device?: "cuda" | "cpu";
  attentionBackend?: "auto" | "triton" | "reference";
  parallelLoading?: boolean;
  seed?: number;
  /** KV cache budget on the CPU device (no memory profile there). */
  cpuKvCacheBytes?: number;
  /**
   * Let the engine send the next step before the previous one's output is back (default true; one rank
   * only). The environment variable LMI_PIPELINE_STEPS=0 turns it off too.
   */
  pipelineSteps?: boolean;
  /** From spawn until rank 0 answers hello. */
  startupTimeoutMs?: number;
  /** For the load call (weights from disk). */
  loadTimeoutMs?: number;
  /** For a health probe when no call is in flight. */
  healthTimeoutMs?: number;
  /** Where rank output goes; default: process.stderr with a rank prefix. */
  onLog?: (rank: number, line: string) => void;
  env?: Record<string, string | undefined>;
}

export interface PythonExecutor extends Executor {
  /** Process ids of the started ranks (mpirun's when mpiMode). */
  readonly pids: number[];
  readonly hello: HelloResult | null;
  readonly lastLoad: LoadResult | null;
  readonly lastInitCache: InitCacheResult | null;
}

// LMI_EXECUTOR_PYTHONPATH serves bundled builds (esbuild), where this file's URL no longer sits in the repo.
const DEFAULT_PYTHON_PATH =
  process.env.LMI_EXECUTOR_PYTHONPATH ?? fileURLToPath(new URL("../../../python", import.meta.url));

interface Pending {
  id: number;
  type: string;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout | null;
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
  const addr = srv.address();
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  if (addr === null || typeof addr === "string") throw new Error("no TCP port for torch.distributed");
  return addr.port;
}

export function createPythonExecutor(opts: PythonExecutorOptions): PythonExecutor {
  return new PythonExecutorImpl(opts);
}

class PythonExecutorImpl implements PythonExecutor {
  hello: HelloResult | null = null;
  lastLoad: LoadResult | null = null;
  lastInitCache: InitCacheResult | null = null;
  private supervisor: RankSupervisor | null = null;
  private server: Server | null = null;
  private socket: Socket | null = null;
  private dir: string | null = null;
  /** Calls sent and not answered yet, in sending order. */
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private dead: Error | null = null;
  private shuttingDown = false;
  private readonly deathListeners: Array<(err: Error) => void> = [];
  private readonly recentLog: string[] = [];
  /** LMI_WIRE_LOG=path (the server's environment or options.env): one JSON line per execute call (execute()). */
  private readonly wireLog: string | null;

  /**
   * Execute calls the engine keeps in flight: 3, or LMI_STEPS_IN_FLIGHT=n (A/B runs), and never more than the
   * executor's hello allows (2 for an executor that does not say). With two, the host round trip that feeds a step
   * (the reply of step S-2 to Node, Node's plan for S, its launch) had one step's GPU time to hide in, which a 1B
   * model's 3.7 ms decode step on an H100 did not cover; with three it has two (docs/gpu-executor.md).
   */
  private readonly stepsInFlight: number;

  constructor(private readonly opts: PythonExecutorOptions) {
    this.wireLog = opts.env?.LMI_WIRE_LOG || process.env.LMI_WIRE_LOG || null;
    const depth = opts.env?.LMI_STEPS_IN_FLIGHT || process.env.LMI_STEPS_IN_FLIGHT;
    if (depth && !/^[1-9][0-9]*$/.test(depth)) {
      throw new ConfigError([`LMI_STEPS_IN_FLIGHT must be a whole number of at least 1, got "${depth}"`]);
    }
    this.stepsInFlight = depth ? Number(depth) : DEFAULT_STEPS_IN_FLIGHT;
  }

  get pids(): number[] {
    return this.supervisor?.pids ?? [];
  }

  onDeath(listener: (err: Error) => void): void {
    this.deathListeners.push(listener);
  }

  async load(): Promise<ModelInfo> {
    if (this.supervisor === null) await this.start();
    const r = await this.call({ type: "load" }, this.opts.loadTimeoutMs ?? 60 * 60_000);
    this.lastLoad = r;
    const { loadSeconds: _s, weightBytes: _w, ...info } = r;
    return info;
  }

  profile(): Promise<CacheProfile> {
    return this.call({ type: "profile" }, this.opts.loadTimeoutMs ?? 60 * 60_000);
  }

  async initCache(numBlocks: number): Promise<void> {
    this.lastInitCache = await this.call(
      { type: "initCache", numBlocks },
      this.opts.loadTimeoutMs ?? 60 * 60_000,
    );
  }

  get maxStepsInFlight(): number {
    const hello = this.hello;
    if (!hello?.capabilities.includes("pipelined-steps")) return 1;
    return Math.min(this.stepsInFlight, hello.maxStepsInFlight ?? 2);
  }

  execute(plan: SchedulerOutput): Promise<ModelRunnerOutput> {
    const out = this.call({ type: "execute", plan }, null);
    const wireLog = this.wireLog;
    if (wireLog !== null) {
      // Diagnostic (LMI_WIRE_LOG, docs/gpu-executor.md): when each plan left and its reply came back, in epoch
      // ms, to line up with the executor's step log (its launch end `t` and `doneAt`, in epoch s).
      const sentAt = performance.timeOrigin + performance.now();
      const log = (ok: boolean) => {
        const replyAt = performance.timeOrigin + performance.now();
        appendFileSync(wireLog, `${JSON.stringify({ stepId: plan.stepId, sentAt, replyAt, ok })}\n`);
      };
      out.then(
        () => log(true),
        () => log(false),
      );
    }
    return out;
  }

  async health(): Promise<ExecutorHealth> {
    if (this.dead) return { ok: false, detail: this.dead.message };
    if (this.socket === null) return { ok: false, detail: "executor not started" };
    // A step in flight occupies rank 0's loop; the processes being alive is the answer then.
    if (this.pending.size > 0) return { ok: true, detail: "busy" };
    try {
      const h = await this.call({ type: "health" }, this.opts.healthTimeoutMs ?? 10_000);
      return { ok: h.ok, detail: `rank0 loaded=${h.loaded} blocks=${h.numBlocks}` };
    } catch (err) {
      return { ok: false, detail: (err as Error).message };
    }
  }

  async shutdown(): Promise<void> {
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    this.supervisor?.markStopping();
    if (this.socket && !this.dead && this.pending.size === 0) {
      try {
        await this.call({ type: "shutdown" }, 10_000);
      } catch {
        // Fall through to killing the ranks.
      }
    }
    if (this.supervisor) {
      const exited = this.supervisor.waitForExit();
      const timer = setTimeout(() => this.supervisor?.kill(), 10_000);
      await exited;
      clearTimeout(timer);
    }
    this.cleanup();
  }

  private async start(): Promise<void> {
    const o = this.opts;
    const world = o.tensorParallelDegree ?? 1;
    this.dir = mkdtempSync(join(tmpdir(), "lmi-exec-"));
    const socketPath = join(this.dir, "rank0.sock");
    const wire: PythonExecutorOptionsWire = {
      model_dir: o.modelDir,
      device: o.device ?? "cuda",
      dtype: o.dtype ?? "auto",
      quantize: o.quantize ?? "",
      load_format: o.loadFormat ?? "auto",
      tensor_parallel_degree: world,
      enable_cuda_graph: o.enableCudaGraph ?? true,
      gpu_memory_utilization: o.gpuMemoryUtilization ?? 0.9,
      kv_cache_dtype: o.kvCacheDtype ?? "auto",
      max_model_len: o.maxModelLen ?? 0,
      block_size: o.blockSize ?? 16,
      max_num_seqs: o.maxNumSeqs ?? 256,
      attention_backend: o.attentionBackend ?? "auto",
      parallel_loading: o.parallelLoading ?? true,
      seed: o.seed ?? 0,
      dist_init_method: world > 1 ? `tcp://127.0.0.1:${await freePort()}` : "",
      cpu_kv_cache_bytes: o.cpuKvCacheBytes ?? 256 << 20,
      max_num_batched_tokens: o.maxNumBatchedTokens ?? 8192,
      checkpoint: o.checkpoint ?? "",
      training_mp_size: o.trainingMpSize ?? 0,
      pipeline_steps: (o.pipelineSteps ?? true) && process.env.LMI_PIPELINE_STEPS !== "0",
    };
    const connected = new Promise<Socket>((resolve, reject) => {
      const server = createServer((sock) => {
        server.close(); // exactly one connection: rank 0
        resolve(sock);
      });
      server.on("error", reject);
      server.listen(socketPath);
      this.server = server;
    });
    this.supervisor = new RankSupervisor({
      pythonExecutable: o.pythonExecutable ?? "python3",
      pythonPath: o.pythonPath ?? DEFAULT_PYTHON_PATH,
      args: ["--socket", socketPath, "--options", JSON.stringify(wire)],
      worldSize: world,
      mpiMode: o.mpiMode ?? false,
      mpirunExecutable: o.mpirunExecutable ?? "mpirun",
      devices: o.loadOnDevices ?? [],
      env: o.env ?? {},
      onLog: (rank, line) => this.log(rank, line),
      onExit: (err) => this.die(err),
    });
    this.supervisor.start();
    const timeoutMs = o.startupTimeoutMs ?? 120_000;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new ExecutorError(`executor did not start within ${timeoutMs} ms${this.logTail()}`)),
        timeoutMs,
      );
    });
    const died = new Promise<never>((_, reject) => this.deathListeners.push((e) => reject(e)));
    try {
      const sock = await Promise.race([connected, timeout, died]);
      this.attach(sock);
      const hello = await Promise.race([
        this.call({ type: "hello", version: PROTOCOL_VERSION }, null),
        timeout,
        died,
      ]);
      if (hello.version !== PROTOCOL_VERSION) {
        throw new ExecutorError(`executor protocol version ${hello.version}, expected ${PROTOCOL_VERSION}`);
      }
      this.hello = hello;
    } catch (err) {
      this.supervisor.markStopping();
      this.supervisor.kill();
      this.cleanup();
      throw err instanceof ExecutorError ? err : new ExecutorError((err as Error).message, { cause: err });
    } finally {
      clearTimeout(timer);
      died.catch(() => {});
      this.deathListeners.pop();
    }
  }

  private attach(sock: Socket): void {
    this.socket = sock;
    const decoder = new FrameDecoder();
    sock.on("data", (chunk: Buffer) => {
      let frames: ReturnType<FrameDecoder["push"]>;
      try {
        frames = decoder.push(chunk);
      } catch (err) {
        this.die(new ExecutorError(`executor sent a bad frame: ${(err as Error).message}`));
        return;
      }
      for (const f of frames) this.onReply(f.header as unknown as Reply);
    });
    sock.on("close", () => {
      if (!this.shuttingDown) this.die(new ExecutorError(`executor closed its socket${this.logTail()}`));
    });
    sock.on("error", () => {}); // 'close' follows and reports
  }

  private onReply(reply: Reply): void {
    const p = this.pending.get(reply.id);
    if (p === undefined) {
      this.die(new ExecutorError(`executor answered unknown request id ${reply.id}`));
      return;
    }
    this.pending.delete(reply.id);
    if (p.timer) clearTimeout(p.timer);
    if (reply.ok) p.resolve(reply.result);
    else {
      const status = reply.error.oom ? 507 : 424;
      p.reject(new ExecutorError(`executor: ${reply.error.message}`, { status }));
    }
  }

  private call<K extends RequestMessage["type"]>(
    msg: Extract<RequestMessage, { type: K }>,
    timeoutMs: number | null,
  ): Promise<ResultByType[K]> {
    if (this.dead) return Promise.reject(new ExecutorError(`executor is dead: ${this.dead.message}`));
    if (this.socket === null)
      return Promise.reject(new ExecutorError("executor not started: call load() first"));
    // Only execute calls overlap (up to maxStepsInFlight), and never with a call of another kind.
    const others = [...this.pending.values()].some((p) => p.type !== "execute");
    const limit = msg.type === "execute" ? this.maxStepsInFlight : 1;
    if (others || this.pending.size >= limit)
      return Promise.reject(
        new Error(`executor call ${msg.type} while ${this.pending.size} other(s) in flight`),
      );
    const id = this.nextId++;
    return new Promise<ResultByType[K]>((resolve, reject) => {
      const timer =
        timeoutMs === null
          ? null
          : setTimeout(() => {
              this.die(new ExecutorError(`executor did not answer ${msg.type} within ${timeoutMs} ms`));
            }, timeoutMs);
      this.pending.set(id, { id, type: msg.type, resolve: resolve as (v: unknown) => void, reject, timer });
      this.socket?.write(encodeFrame({ id, ...msg }));
    });
  }

  private die(err: Error): void {
    if (this.dead || this.shuttingDown) return;
    const e =
      err instanceof ExecutorError ? err : new ExecutorError(err.message + this.logTail(), { cause: err });
    this.dead = e;
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) {
      if (p.timer) clearTimeout(p.timer);
      p.reject(e);
    }
    this.supervisor?.kill();
    this.cleanup();
    for (const l of this.deathListeners) l(e);
  }

  private log(rank: number, line: string): void {
    this.recentLog.push(`[rank ${rank}] ${line}`);
    if (this.recentLog.length > 40) this.recentLog.shift();
    if (this.opts.onLog) this.opts.onLog(rank, line);
    else process.stderr.write(`[executor rank ${rank}] ${line}\n`);
  }

  private logTail(): string {
    const tail = this.recentLog.slice(-12);
    return tail.length > 0 ? `\n--- last executor output ---\n${tail.join("\n")}` : "";
  }

  private cleanup(): void {
    this.socket?.destroy();
    this.server?.close();
    this.server = null;
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
    this.dir = null;
  }
}
