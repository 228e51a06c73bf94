// The model registry: every registered model (by name and optional version), its status
// (PENDING while loading, READY, FAILED), its worker view, its in-flight request count against
// job_queue_size, and the backend behind it. Owns the restart policy for a dead engine.
// Invariants: names are unique per version; a model's backend is non-null only when it loaded;
// `inFlight` never exceeds options.jobQueueSize (admission fails fast with 503 instead).

import { EngineDeadError, ModelNotFoundError, ModelNotReadyError, ServerError } from "../errors.ts";
import type { Logger } from "../server/log.ts";
import {
  type Backend,
  DEFAULT_SERVING_OPTIONS,
  type LoadedModel,
  type ModelLoader,
  type ModelSpec,
  type ModelStatus,
  type ServingOptions,
  type WorkerInfo,
} from "./types.ts";

export class ConflictingModelError extends ServerError {
  constructor(name: string) {
    super(`Workflow ${name} is already registered.`, 409, "BadRequestException");
  }
}

export class QueueFullError extends ServerError {
  constructor(name: string) {
    super(`Worker queue capacity exceeded for model: ${name}`, 503, "WlmCapacityException");
  }
}

export class WorkersShutdownError extends ServerError {
  constructor(name: string) {
    super(`All model workers has been shutdown: ${name}`, 503, "WlmShutdownException");
  }
}

export class ModelEntry {
  readonly spec: ModelSpec;
  readonly loadedAtStartup: boolean;
  status: ModelStatus = "PENDING";
  options: ServingOptions;
  backend: Backend | null = null;
  failed = 0;
  inFlight = 0;
  error: string | null = null;
  startTime = new Date().toISOString();
  /** Set while a restart after an engine death is under way. */
  restarting: Promise<void> | null = null;
  loaded: LoadedModel | null = null;

  constructor(spec: ModelSpec, loadedAtStartup: boolean) {
    this.spec = spec;
    this.loadedAtStartup = loadedAtStartup;
    this.options = { ...DEFAULT_SERVING_OPTIONS, ...spec.overrides };
  }

  get name(): string {
    return this.spec.name;
  }
  get key(): string {
    return this.spec.version ? `${this.spec.name}:${this.spec.version}` : this.spec.name;
  }

  /** The worker view for describe and /ping: the engine is one worker; handlers report their pool. */
  workers(): WorkerInfo[] {
    if (this.backend?.kind === "handler" && this.backend.handler.workers)
      return this.backend.handler.workers();
    const n = this.status === "READY" || this.status === "FAILED" ? Math.min(this.options.maxWorkers, 1) : 0;
    const status = this.backend ? "READY" : this.status === "PENDING" ? "PENDING" : "FAILED";
    return Array.from({ length: n }, (_, i) => ({ id: i + 1, startTime: this.startTime, status }));
  }

  failedCount(): number {
    if (this.backend?.kind === "handler" && this.backend.handler.failedCount) {
      return this.failed + this.backend.handler.failedCount();
    }
    return this.failed;
  }

  /** Status reported by GET /models and /ping: FAILED once crashes exceed the retry threshold. */
  effectiveStatus(): ModelStatus {
    if (this.status === "READY" && this.failedCount() > this.options.retryThreshold) return "FAILED";
    return this.status;
  }
}

export interface RegistryOptions {
  loader: ModelLoader;
  logger: Logger;
  /** Told how long each successful load took (the LoadModel metric). */
  onLoaded?: (entry: ModelEntry, ms: number) => void;
}

export class ModelRegistry {
  private readonly entries = new Map<string, ModelEntry>();
  private readonly loader: ModelLoader;
  private readonly logger: Logger;
  private readonly onLoaded: RegistryOptions["onLoaded"];
  /** The model /invocations uses when the request names none (the single startup model). */
  private defaultModel: string | null = null;

  constructor(opts: RegistryOptions) {
    this.loader = opts.loader;
    this.logger = opts.logger;
    this.onLoaded = opts.onLoaded;
  }

  /**
   * Adds a model and starts loading it. The returned promise settles when loading ends; it rejects
   * with the load error (the entry stays, FAILED, so /ping and describe can report it).
   */
  register(
    spec: ModelSpec,
    opts: { loadedAtStartup?: boolean } = {},
  ): { entry: ModelEntry; ready: Promise<void> } {
    const entry = new ModelEntry(spec, opts.loadedAtStartup ?? false);
    if (this.entries.has(entry.key)) throw new ConflictingModelError(entry.key);
    this.entries.set(entry.key, entry);
    if (opts.loadedAtStartup && this.defaultModel === null) this.defaultModel = entry.key;
    const ready = this.load(entry);
    ready.catch(() => {}); // the caller may not wait (async registration); the entry records the error
    return { entry, ready };
  }

  private async load(entry: ModelEntry): Promise<void> {
    const t0 = performance.now();
    try {
      const loaded = await this.loader(entry.spec);
      if (this.entries.get(entry.key) !== entry) {
        await loaded.close(); // unregistered while loading
        return;
      }
      entry.loaded = loaded;
      entry.backend = loaded.backend;
      entry.options = { ...loaded.options, ...entry.spec.overrides };
      entry.status = "READY";
      if (loaded.backend.kind === "engine" && loaded.backend.onDeath) {
        const backend = loaded.backend;
        backend.onDeath?.((err) => {
          if (entry.backend === backend) void this.reportDeath(entry, err);
        });
      }
      entry.startTime = new Date().toISOString();
      const ms = performance.now() - t0;
      this.onLoaded?.(entry, ms);
      this.logger.info(`Model ${entry.key} loaded in ${Math.round(ms)} ms`, {
        backend: loaded.backend.kind,
        rollingBatch: entry.options.rollingBatch,
      });
    } catch (err) {
      entry.status = "FAILED";
      entry.error = err instanceof Error ? err.message : String(err);
      this.logger.error(`Model ${entry.key} failed to load: ${entry.error}`);
      throw err;
    }
  }

  /** Finds a model; without a version, the first registered version of that name. */
  get(name: string, version?: string): ModelEntry {
    if (version) {
      const e = this.entries.get(`${name}:${version}`);
      if (e) return e;
      throw new ModelNotFoundError(`${name}:${version}`);
    }
    const exact = this.entries.get(name);
    if (exact) return exact;
    for (const e of this.entries.values()) if (e.name === name) return e;
    throw new ModelNotFoundError(name);
  }

  has(name: string): boolean {
    for (const e of this.entries.values()) if (e.name === name) return true;
    return false;
  }

  /** The model a request that names none goes to, or null (then the caller answers 400). */
  defaultEntry(): ModelEntry | null {
    if (this.defaultModel && this.entries.has(this.defaultModel)) return this.entries.get(this.defaultModel)!;
    return this.entries.size === 1 ? [...this.entries.values()][0] : null;
  }

  list(): ModelEntry[] {
    return [...this.entries.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async unregister(name: string, version?: string): Promise<ModelEntry> {
    const entry = this.get(name, version);
    this.entries.delete(entry.key);
    if (this.defaultModel === entry.key) this.defaultModel = null;
    if (entry.loaded) await entry.loaded.close();
    entry.backend = null;
    this.logger.info(`Model ${entry.key} unregistered`);
    return entry;
  }

  /** Changes the worker range; handler pools rescale, the engine's single worker stops at max 0. */
  async scale(entry: ModelEntry, minWorkers: number, maxWorkers: number): Promise<void> {
    if (entry.status !== "READY") throw new ModelNotReadyError(entry.key);
    if (entry.backend?.kind === "handler" && entry.backend.handler.scale) {
      await entry.backend.handler.scale(minWorkers, maxWorkers);
    }
    entry.options = { ...entry.options, minWorkers, maxWorkers };
  }

  /**
   * Admits one request: fails fast with 503 when the model is loading, has no workers, or its
   * queue (job_queue_size) is full. The returned function must be called exactly once.
   */
  acquire(entry: ModelEntry): () => void {
    if (entry.status === "PENDING" && !entry.backend) throw new ModelNotReadyError(entry.key);
    if (entry.options.maxWorkers === 0) throw new WorkersShutdownError(entry.key);
    if (!entry.backend) {
      if (entry.restarting) throw new EngineDeadError(`The engine of model ${entry.key} is restarting.`);
      throw new ModelNotReadyError(entry.key);
    }
    if (entry.inFlight >= entry.options.jobQueueSize) throw new QueueFullError(entry.key);
    entry.inFlight++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      entry.inFlight--;
    };
  }

  /**
   * An engine reported it is dead: count the crash and rebuild the backend with the same loader.
   * Requests in the meantime get 503; the model reports FAILED once crashes exceed retry_threshold.
   */
  reportDeath(entry: ModelEntry, err: Error): Promise<void> {
    if (entry.restarting) return entry.restarting;
    entry.failed++;
    this.logger.error(`Model ${entry.key} backend died (${entry.failed} failures): ${err.message}`);
    const old = entry.loaded;
    entry.backend = null;
    entry.loaded = null;
    entry.restarting = (async () => {
      try {
        await old?.close();
      } catch {
        // the dead backend may fail to close; the restart must not depend on it
      }
      try {
        await this.load(entry);
      } catch {
        // load() has marked the entry FAILED and logged why
      } finally {
        entry.restarting = null;
      }
    })();
    return entry.restarting;
  }

  async closeAll(): Promise<void> {
    const all = [...this.entries.values()];
    this.entries.clear();
    await Promise.allSettled(all.map((e) => e.loaded?.close()));
  }
}
