// The public face of the Python handler path: createHandlerModel() turns a model's options into a
// HandlerModel backed by a supervised pool of djl_python workers.
//
//   const model = createHandlerModel({ modelName, modelDir, options: { minWorkers: 1, maxWorkers: 1,
//     batchSize: 1, maxBatchDelayMs: 100, modelLoadingTimeoutS: 240, predictTimeoutS: 120, properties } });
//   await model.start();                 // rejects with ModelLoadError / OutOfMemoryError (507)
//   const out = await model.invoke(djlInput, abortSignal);   // DjlOutput; out.stream when streaming
//   model.status(); model.failedCount(); model.describeWorkers(); await model.scale(1, 2); await model.shutdown();
//
// Invariants: options are validated here, once (bad values throw ConfigError naming the option); the
// init request carries every `option.*` value without its prefix plus `handler`.

import { ConfigError, ValidationError } from "../errors.ts";
import { defaultCacheDir, downloadEntryPoint, isUrlEntryPoint } from "./entry-point-download.ts";
import type { ModelLoadError } from "./errors.ts";
import {
  buildLaunchCommand,
  deviceGroups,
  nextSocketPath,
  parseOptionEnv,
  resolveEntryPoints,
} from "./launch.ts";
import type { DjlInput, DjlOutput, HandlerModel } from "./protocol.ts";
import type { WorkerLog } from "./python-worker.ts";
import { installRequirements } from "./requirements.ts";
import { type ModelHealth, type WorkerDescription, WorkerPool } from "./worker-pool.ts";

export interface HandlerModelOptions {
  /** option.entryPoint: model.py, a module name (djl_python.huggingface) or an absolute path. */
  entryPoint?: string;
  /** option.handler: the function to call (default `handle`). */
  handler?: string;
  /** option.pythonExecutable; else env PYTHON_EXECUTABLE; else python3. */
  pythonExecutable?: string;
  minWorkers: number;
  maxWorkers: number;
  batchSize: number;
  maxBatchDelayMs: number;
  modelLoadingTimeoutS: number;
  predictTimeoutS: number;
  /** load_on_devices: `*`, `0;1`, `gpu0;gpu1`. */
  loadOnDevices?: string;
  /** option.env, as `K=V,K2=V2` or already parsed. */
  env?: string | Record<string, string>;
  mpiMode?: boolean;
  /** GPUs per worker (and MPI ranks in mpi_mode); 0 or less means `max`: every device of the worker. */
  tensorParallelDegree?: number;
  pipelineParallelDegree?: number;
  /** Every option.* value without the prefix; sent as the init request's properties. */
  properties: Record<string, string>;
  /** job_queue_size (default 1000). */
  jobQueueSize?: number;
  /** max_idle_time in seconds: workers above minWorkers stop after this long idle (default 60). */
  maxIdleS?: number;
  /** Crash count above which status() is FAILED (SERVING_RETRY_THRESHOLD; default 0 as in LMI HEAD). */
  retryThreshold?: number;
  /** How long to wait for the startup line (default 120 s, as DJL). */
  startupTimeoutS?: number;
  /** Relay of worker log lines (default: stderr). */
  log?: WorkerLog;
  logLevel?: "info" | "debug";
  /** Entry point used when the entry point lacks the handler function (default: djl_python.huggingface
   * when there is a model_id or config.json, as DJL recommends). */
  recommendedEntryPoint?: string;
  /** The GPUs `load_on_devices=*` spreads workers over (default: CUDA_VISIBLE_DEVICES, else nvidia-smi). */
  visibleGpus?: () => string[];
  /** Where an http(s) entry point is downloaded (default SERVING_DOWNLOAD_DIR, DJL_CACHE_DIR, ~/.djl.ai). */
  cacheDir?: string;
  /** The mpirun binary (default `mpirun`). */
  mpirun?: string;
}

export interface HandlerModelSpec {
  modelName: string;
  modelDir: string;
  options: HandlerModelOptions;
}

export interface PythonHandlerModel extends HandlerModel {
  start(): Promise<void>;
  status(): ModelHealth;
  failedCount(): number;
  describeWorkers(): WorkerDescription[];
  /** The registry's view (WorkerInfo): id, startTime, status. */
  workers(): Array<{ id: number; startTime: string; status: "READY" | "PENDING" | "FAILED" | "STOPPED" }>;
  scale(minWorkers: number, maxWorkers: number): Promise<void>;
  shutdown(): Promise<void>;
}

function positiveNumber(name: string, v: number, problems: string[], allowZero = false): void {
  if (!Number.isFinite(v) || v < 0 || (!allowZero && v === 0)) {
    problems.push(`${name} must be a ${allowZero ? "non-negative" : "positive"} number, got ${v}`);
  }
}

function defaultLog(level: string, line: string): void {
  process.stderr.write(`${new Date().toISOString()} ${level.toUpperCase()} ${line}\n`);
}

export function createHandlerModel(spec: HandlerModelSpec): PythonHandlerModel {
  const o = spec.options;
  const problems: string[] = [];
  positiveNumber("minWorkers", o.minWorkers, problems, true);
  positiveNumber("maxWorkers", o.maxWorkers, problems, true);
  if (o.maxWorkers < o.minWorkers)
    problems.push(`maxWorkers (${o.maxWorkers}) must be >= minWorkers (${o.minWorkers})`);
  positiveNumber("batch_size", o.batchSize, problems);
  positiveNumber("max_batch_delay", o.maxBatchDelayMs, problems, true);
  positiveNumber("option.model_loading_timeout", o.modelLoadingTimeoutS, problems);
  positiveNumber("option.predict_timeout", o.predictTimeoutS, problems);
  if (!Number.isInteger(o.batchSize)) problems.push(`batch_size must be an integer, got ${o.batchSize}`);
  const streaming = (o.properties.enable_streaming ?? "false").toLowerCase();
  if (o.batchSize > 1 && (streaming === "true" || streaming === "huggingface")) {
    problems.push(
      "We cannot enable streaming for dynamic batching (batch_size > 1 with option.enable_streaming)",
    );
  }
  const tp = o.tensorParallelDegree ?? 1;
  const pp = o.pipelineParallelDegree ?? 1;
  if (problems.length > 0) throw new ConfigError(problems);

  const resolved = resolveEntryPoints({
    modelName: spec.modelName,
    modelDir: spec.modelDir,
    entryPoint: o.entryPoint ?? o.properties.entryPoint,
    properties: o.properties,
  });
  const entryPoints = {
    ...resolved,
    recommendedEntryPoint: o.recommendedEntryPoint ?? resolved.recommendedEntryPoint,
  };
  const extraEnv = typeof o.env === "string" || o.env === undefined ? parseOptionEnv(o.env) : { ...o.env };
  // TP <= 0 (`max`) gives each worker every device; otherwise TP·PP consecutive ones.
  const groups = deviceGroups(o.loadOnDevices, tp > 0 ? tp * Math.max(1, pp) : 0, o.visibleGpus);
  const handlerName = o.handler ?? o.properties.handler ?? "handle";
  const pythonExecutable = o.pythonExecutable ?? process.env.PYTHON_EXECUTABLE ?? "python3";
  const allowOverride = (process.env.ALLOW_REQUEST_HANDLER_OVERRIDE ?? "").toLowerCase() === "true";

  const initProperties = { ...o.properties, entryPoint: entryPoints.entryPoint, handler: handlerName };
  const pool = new WorkerPool({
    modelName: spec.modelName,
    minWorkers: o.minWorkers,
    maxWorkers: o.maxWorkers,
    batchSize: o.batchSize,
    maxBatchDelayMs: o.maxBatchDelayMs,
    jobQueueSize: o.jobQueueSize ?? 1000,
    loadTimeoutMs: o.modelLoadingTimeoutS * 1000,
    predictTimeoutMs: o.predictTimeoutS * 1000,
    startupTimeoutMs: (o.startupTimeoutS ?? 120) * 1000,
    maxIdleMs: (o.maxIdleS ?? 60) * 1000,
    retryThreshold: o.retryThreshold ?? Number(process.env.SERVING_RETRY_THRESHOLD ?? 0),
    sharedProperties: { handler: handlerName },
    initProperties,
    log: o.log ?? defaultLog,
    launchFor: (index) =>
      buildLaunchCommand({
        modelDir: spec.modelDir,
        entryPoints,
        pythonExecutable,
        workerIndex: index,
        socketPath: nextSocketPath(),
        devices: groups ? groups[index % groups.length] : null,
        logLevel: o.logLevel ?? "info",
        mpiMode: o.mpiMode ?? false,
        tensorParallelDegree: Math.max(1, tp),
        pipelineParallelDegree: Math.max(1, pp),
        mpirun: o.mpirun,
        extraEnv,
      }),
  });

  const log = o.log ?? defaultLog;
  return {
    async start() {
      if (isUrlEntryPoint(entryPoints.entryPoint)) {
        const url = entryPoints.entryPoint;
        try {
          entryPoints.entryPoint = await downloadEntryPoint(url, o.cacheDir ?? defaultCacheDir());
        } catch (e) {
          pool.markFailed(e as ModelLoadError);
          await pool.shutdown();
          throw e;
        }
        initProperties.entryPoint = entryPoints.entryPoint;
        log("info", `model ${spec.modelName}: entry point ${url} downloaded to ${entryPoints.entryPoint}`);
      }
      await installRequirements({
        pythonExecutable,
        modelDir: spec.modelDir,
        timeoutMs: o.modelLoadingTimeoutS * 1000,
        log,
        env: { ...process.env, ...extraEnv },
      }).catch(async (e) => {
        pool.markFailed(e);
        await pool.shutdown(); // requests queued while installing must not wait forever
        throw e;
      });
      await pool.start();
    },
    invoke(input: DjlInput, signal?: AbortSignal): Promise<DjlOutput> {
      const override = Object.keys(input.properties).find((k) => k.toLowerCase() === "handler");
      if (override && !allowOverride) {
        return Promise.reject(new ValidationError("The handler can't be overridden in a request", "handler"));
      }
      return pool.submit(input, signal);
    },
    status: () => pool.status(),
    failedCount: () => pool.failedCount(),
    describeWorkers: () => pool.describeWorkers(),
    workers: () => pool.describeWorkers().map(({ id, startTime, status }) => ({ id, startTime, status })),
    scale: (min, max) => pool.scale(min, max),
    shutdown: () => pool.shutdown(),
  };
}
