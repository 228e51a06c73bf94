// What the registry holds per model: the serving options the HTTP layer needs (mapped once from the
// model's config by `lmi serve`), the backend behind the model (paged engine or Python handler), and
// the loader that builds a backend from a registration. Nothing here reads raw config keys.

import type { GenerationParams, LlmEngine } from "../engine/protocol.ts";
import type { HandlerModel } from "../handler/protocol.ts";

export type ModelStatus = "PENDING" | "READY" | "FAILED";

/** Per-model serving settings, already validated and defaulted. */
export interface ServingOptions {
  /** option.output_formatter, or null for the default (json, or jsonlines/sse when streaming). */
  outputFormatter: string | null;
  tgiCompat: boolean;
  jobQueueSize: number;
  batchSize: number;
  maxBatchDelayMillis: number;
  maxIdleSeconds: number;
  minWorkers: number;
  maxWorkers: number;
  /** option.enable_streaming (static batching only). */
  enableStreaming: "false" | "true" | "huggingface";
  /** The rolling_batch value that was chosen, for logs and describe. */
  rollingBatch: string;
  /** Crash count above which the model reports FAILED (SERVING_RETRY_THRESHOLD). */
  retryThreshold: number;
}

export const DEFAULT_SERVING_OPTIONS: Readonly<ServingOptions> = Object.freeze({
  outputFormatter: null,
  tgiCompat: false,
  jobQueueSize: 1000,
  batchSize: 1,
  maxBatchDelayMillis: 100,
  maxIdleSeconds: 60,
  minWorkers: 1,
  maxWorkers: 1,
  enableStreaming: "false",
  rollingBatch: "auto",
  retryThreshold: 0,
});

export interface WorkerInfo {
  id: number;
  startTime: string;
  status: "READY" | "PENDING" | "FAILED" | "STOPPED";
}

/** Optional controls a handler backend offers (Python worker pools scale and report crashes). */
export interface HandlerControls {
  scale?(minWorkers: number, maxWorkers: number): Promise<void>;
  workers?(): WorkerInfo[];
  failedCount?(): number;
}

export type Backend =
  | {
      kind: "engine";
      engine: LlmEngine;
      /** The engine's parameter validator (spec §3.2): raw LMI `parameters` -> GenerationParams. */
      validateParameters(raw: Record<string, unknown>): GenerationParams;
      /** Called when the engine dies on its own (executor crash); the registry restarts the model. */
      onDeath?(listener: (err: Error) => void): void;
    }
  | { kind: "handler"; handler: HandlerModel & HandlerControls };

export interface LoadedModel {
  backend: Backend;
  options: ServingOptions;
  /** Releases the backend (engine shutdown, workers stopped). */
  close(): Promise<void>;
}

/** What a registration asks for (management API POST /models, or startup models). */
export interface ModelSpec {
  name: string;
  version?: string;
  /** Local dir, hub id or s3:// URL. */
  url: string;
  engine?: string;
  /** Local model directory when already known (startup models found on disk). */
  modelDir?: string;
  /** Properties that beat serving.properties (load_models engine, HF_MODEL_ID's option.model_id). */
  extraProperties?: Record<string, string>;
  /** Where the registration came from, for logs ("load_models", "HF_MODEL_ID", "management API"). */
  origin?: string;
  overrides: Partial<
    Pick<
      ServingOptions,
      "jobQueueSize" | "batchSize" | "maxBatchDelayMillis" | "maxIdleSeconds" | "minWorkers" | "maxWorkers"
    >
  >;
}

export type ModelLoader = (spec: ModelSpec) => Promise<LoadedModel>;
