// Parses `lmi bench` flag values into one validated BenchConfig. Single-value parsers throw commander's
// InvalidArgumentError (commander prefixes the flag); rules that join several flags throw BenchError
// naming the flag to change. Nothing here touches the network or the file system.

import { InvalidArgumentError } from "commander";
import { BACKEND_NAMES, BACKENDS, type BackendName, type BackendSpec } from "./backends.ts";
import { BenchError } from "./errors.ts";
import type { Slo } from "./metrics.ts";

export interface BenchFlags {
  backend: BackendName;
  baseUrl: string;
  endpoint?: string;
  model?: string;
  tokenizer?: string;
  datasetName: "random" | "jsonl";
  datasetPath?: string;
  numPrompts: number;
  randomInputLen: number;
  randomOutputLen: number;
  randomRangeRatio: number;
  randomPromptKind?: "ids" | "text";
  randomVocabSize?: number;
  jsonlOutputLen?: number;
  requestRate: number;
  burstiness: number;
  maxConcurrency?: number;
  numWarmups: number;
  ignoreEos?: boolean;
  seed: number;
  metricPercentiles: number[];
  goodput?: string[];
  requestTimeout: number;
  extraBody?: Record<string, unknown>;
  resultFile?: string;
  sweepConcurrency?: number[];
  promptsPerConcurrency?: number;
  chart?: string;
  label?: string;
  progress: boolean;
}

export interface BenchConfig extends Omit<BenchFlags, "goodput" | "backend" | "endpoint"> {
  backend: BackendSpec;
  url: string;
  randomPromptKind: "ids" | "text";
  slo: Slo;
}

export function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("must be a positive integer");
  return n;
}

export function nonNegativeInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError("must be an integer >= 0");
  return n;
}

export function positiveNumber(v: string): number {
  const n = Number(v);
  if (!(n > 0) || !Number.isFinite(n)) throw new InvalidArgumentError("must be a number > 0");
  return n;
}

/** Requests per second, or inf (everything at t = 0). */
export function requestRate(v: string): number {
  if (/^inf(inity)?$/i.test(v)) return Number.POSITIVE_INFINITY;
  return positiveNumber(v);
}

export function rangeRatio(v: string): number {
  const n = Number(v);
  if (v.trim() === "" || !(n >= 0 && n < 1)) throw new InvalidArgumentError("must be in [0, 1)");
  return n;
}

export function intList(v: string): number[] {
  const parts = v.split(",").map((s) => s.trim());
  if (parts.some((p) => !/^\d+$/.test(p) || Number(p) < 1)) {
    throw new InvalidArgumentError("must be a comma-separated list of positive integers, e.g. 1,4,16,64");
  }
  return parts.map(Number);
}

export function percentileList(v: string): number[] {
  const parts = v.split(",").map((s) => s.trim());
  const ps = parts.map(Number);
  if (parts.some((p) => p === "") || ps.some((p) => !(p > 0 && p < 100))) {
    throw new InvalidArgumentError("must be comma-separated percentiles in (0, 100), e.g. 90,99");
  }
  return ps;
}

export function jsonObject(v: string): Record<string, unknown> {
  let o: unknown;
  try {
    o = JSON.parse(v);
  } catch {
    throw new InvalidArgumentError("must be a JSON object");
  }
  if (typeof o !== "object" || o === null || Array.isArray(o)) {
    throw new InvalidArgumentError("must be a JSON object");
  }
  return o as Record<string, unknown>;
}

export function oneOf<T extends string>(values: readonly T[]) {
  return (v: string): T => {
    if (!(values as readonly string[]).includes(v)) {
      throw new InvalidArgumentError(`must be one of ${values.join(", ")}`);
    }
    return v as T;
  };
}

/** `--goodput ttft:200 tpot:50 e2el:5000` (ms), as vLLM's flag. */
export function parseGoodput(items: readonly string[]): Slo {
  const slo: Slo = {};
  const keys = { ttft: "ttftMs", tpot: "tpotMs", e2el: "e2elMs" } as const;
  for (const item of items) {
    const m = /^(ttft|tpot|e2el):(.+)$/.exec(item.trim());
    const ms = m ? Number(m[2]) : Number.NaN;
    if (!m || !(ms >= 0) || !Number.isFinite(ms)) {
      throw new BenchError(
        `'${item}' is not NAME:MILLISECONDS with NAME one of ttft, tpot, e2el (e.g. ttft:200)`,
        "--goodput",
      );
    }
    slo[keys[m[1] as keyof typeof keys]] = ms;
  }
  return slo;
}

export function resolveConfig(f: BenchFlags): BenchConfig {
  const backend = BACKENDS[f.backend];
  if (!BACKEND_NAMES.includes(f.backend)) throw new BenchError(`unknown backend ${f.backend}`, "--backend");
  let base: URL;
  try {
    base = new URL(f.baseUrl);
  } catch {
    throw new BenchError(`'${f.baseUrl}' is not a URL (e.g. http://127.0.0.1:8080)`, "--base-url");
  }
  if (base.protocol !== "http:" && base.protocol !== "https:") {
    throw new BenchError(`'${f.baseUrl}' must be an http:// or https:// URL`, "--base-url");
  }
  const endpoint = f.endpoint ?? backend.defaultEndpoint;
  if (!endpoint.startsWith("/")) throw new BenchError(`'${endpoint}' must start with /`, "--endpoint");
  const url = base.origin + base.pathname.replace(/\/+$/, "") + endpoint;
  if (f.datasetName === "jsonl" && f.datasetPath === undefined) {
    throw new BenchError("--dataset-name jsonl needs a file of prompts", "--dataset-path");
  }
  if (f.datasetName === "random" && f.datasetPath !== undefined) {
    throw new BenchError("only --dataset-name jsonl reads a file", "--dataset-path");
  }
  const kind = f.randomPromptKind ?? (backend.acceptsTokenIds ? "ids" : "text");
  if (kind === "ids" && !backend.acceptsTokenIds) {
    throw new BenchError(
      `--backend ${backend.name} takes text prompts only; use text`,
      "--random-prompt-kind",
    );
  }
  if (f.ignoreEos && !backend.supportsIgnoreEos) {
    throw new BenchError(`--backend ${backend.name} has no way to ignore EOS`, "--ignore-eos");
  }
  if (f.promptsPerConcurrency !== undefined && f.sweepConcurrency === undefined) {
    throw new BenchError("only applies with --sweep-concurrency", "--prompts-per-concurrency");
  }
  if (f.sweepConcurrency !== undefined && f.maxConcurrency !== undefined) {
    throw new BenchError(
      "a sweep sets the concurrency of each level; drop one of the two",
      "--max-concurrency",
    );
  }
  if (f.chart !== undefined && f.sweepConcurrency === undefined) {
    throw new BenchError("the chart plots a concurrency sweep: add --sweep-concurrency", "--chart");
  }
  const { goodput, endpoint: _e, backend: _b, ...rest } = f;
  return { ...rest, backend, url, randomPromptKind: kind, slo: parseGoodput(goodput ?? []) };
}
