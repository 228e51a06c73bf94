// Prometheus metrics (prom-client, one private Registry per server): DJL's names from spec §6.2
// (counters end in _total with DJL's help text) plus what an LLM operator needs: running/waiting
// requests and KV-cache usage read from each engine at scrape time, TTFT and inter-token latency
// histograms, token counters. Invariant: recording never throws into a request path.

import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { ModelRegistry } from "../registry/registry.ts";

const COUNT_HELP = ": prometheus counter metric, unit: Count";
const MICROS_HELP = ": prometheus gauge metric, unit: Microseconds";
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const ITL_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.5];

export class ServerMetrics {
  readonly registry = new Registry();
  private readonly responses: Record<"2XX" | "4XX" | "5XX", Counter>;
  private readonly serverError: Counter;
  private readonly modelLoadingError: Counter;
  readonly ttft: Histogram<"model">;
  readonly itl: Histogram<"model">;
  readonly requestLatency: Histogram<"model">;
  readonly queueTime: Histogram<"model">;
  readonly generationTokens: Counter<"model">;
  readonly promptTokens: Counter<"model">;
  readonly finished: Counter<"model" | "finish_reason">;
  /** DJL's per-model gauges (last value, µs): RequestLatency and LoadModel; StartupLatency once. */
  readonly djlRequestLatency: Gauge<"Model">;
  readonly djlLoadModel: Gauge<"Model">;
  readonly djlStartupLatency: Gauge;

  constructor(opts: { version: string; modelRegistry?: () => ModelRegistry | null }) {
    const registers = [this.registry];
    const start = new Counter({
      name: "DJLServingStart_total",
      help: COUNT_HELP,
      labelNames: ["Version"],
      registers,
    });
    start.inc({ Version: opts.version });
    this.responses = {
      "2XX": new Counter({ name: "Response_2XX_total", help: COUNT_HELP, registers }),
      "4XX": new Counter({ name: "Response_4XX_total", help: COUNT_HELP, registers }),
      "5XX": new Counter({ name: "Response_5XX_total", help: COUNT_HELP, registers }),
    };
    this.serverError = new Counter({ name: "ServerError_total", help: COUNT_HELP, registers });
    this.modelLoadingError = new Counter({ name: "ModelLoadingError_total", help: COUNT_HELP, registers });
    this.djlRequestLatency = new Gauge({
      name: "RequestLatency",
      help: MICROS_HELP,
      labelNames: ["Model"],
      registers,
    });
    this.djlLoadModel = new Gauge({ name: "LoadModel", help: MICROS_HELP, labelNames: ["Model"], registers });
    this.djlStartupLatency = new Gauge({ name: "StartupLatency", help: MICROS_HELP, registers });
    const labelNames = ["model"] as const;
    this.ttft = new Histogram({
      name: "lmi_time_to_first_token_seconds",
      help: "Time from request arrival to the first generated token.",
      labelNames,
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.itl = new Histogram({
      name: "lmi_inter_token_latency_seconds",
      help: "Time between consecutive generated tokens of one request.",
      labelNames,
      buckets: ITL_BUCKETS,
      registers,
    });
    this.requestLatency = new Histogram({
      name: "lmi_request_latency_seconds",
      help: "End-to-end latency of inference requests (RequestLatency).",
      labelNames,
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.queueTime = new Histogram({
      name: "lmi_queue_time_seconds",
      help: "Time from arrival to the first engine output (QueueTime + prefill).",
      labelNames,
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.generationTokens = new Counter({
      name: "lmi_generation_tokens_total",
      help: "Tokens generated.",
      labelNames,
      registers,
    });
    this.promptTokens = new Counter({
      name: "lmi_prompt_tokens_total",
      help: "Prompt tokens processed.",
      labelNames,
      registers,
    });
    this.finished = new Counter({
      name: "lmi_requests_finished_total",
      help: "Finished generation requests by finish reason.",
      labelNames: ["model", "finish_reason"],
      registers,
    });
    const engineGauge = (name: string, help: string, read: (s: EngineStatsLike) => number) =>
      new Gauge({
        name,
        help,
        labelNames,
        registers,
        collect() {
          this.reset();
          const reg = opts.modelRegistry?.();
          if (!reg) return;
          for (const e of reg.list()) {
            if (e.backend?.kind === "engine") this.set({ model: e.key }, read(e.backend.engine.stats()));
          }
        },
      });
    engineGauge("lmi_num_requests_running", "Requests in the running batch.", (s) => s.numRunning);
    engineGauge("lmi_num_requests_waiting", "Requests waiting for admission.", (s) => s.numWaiting);
    engineGauge(
      "lmi_kv_cache_usage_ratio",
      "Fraction of KV-cache blocks in use (0..1).",
      (s) => s.kvCacheUsage,
    );
    engineGauge("lmi_num_preemptions", "Preemptions since start.", (s) => s.numPreemptions);
    engineGauge("lmi_prefix_cache_hit_rate", "Prefix-cache hit rate (0..1).", (s) => s.prefixCacheHitRate);
    new Gauge({
      name: "lmi_requests_in_flight",
      help: "Admitted requests per model (counted against job_queue_size).",
      labelNames,
      registers,
      collect() {
        this.reset();
        for (const e of opts.modelRegistry?.()?.list() ?? []) this.set({ model: e.key }, e.inFlight);
      },
    });
  }

  recordResponse(status: number): void {
    if (status >= 500) {
      this.responses["5XX"].inc();
      this.serverError.inc();
    } else if (status >= 400) this.responses["4XX"].inc();
    else this.responses["2XX"].inc();
  }

  recordModelLoadingError(): void {
    this.modelLoadingError.inc();
  }

  /** Prometheus text; `names` filters like DJL's ?name[]=X. */
  async render(names: string[]): Promise<string> {
    if (names.length === 0) return this.registry.metrics();
    const parts: string[] = [];
    for (const n of names) {
      if (this.registry.getSingleMetric(n)) parts.push(await this.registry.getSingleMetricAsString(n));
    }
    return parts.length > 0 ? `${parts.join("\n")}\n` : "";
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

interface EngineStatsLike {
  numRunning: number;
  numWaiting: number;
  kvCacheUsage: number;
  numPreemptions: number;
  prefixCacheHitRate: number;
}

/** Tracks one generation's token timings for the TTFT / inter-token histograms. */
export class GenerationTimer {
  private readonly start = performance.now();
  private last: number | null = null;
  constructor(
    private readonly metrics: ServerMetrics,
    private readonly model: string,
  ) {}

  onTokens(count: number): void {
    if (count <= 0) return;
    const now = performance.now();
    if (this.last === null) {
      this.metrics.ttft.observe({ model: this.model }, (now - this.start) / 1000);
      this.metrics.queueTime.observe({ model: this.model }, (now - this.start) / 1000);
    } else {
      // Several tokens in one delta share the gap; each counts as one inter-token interval.
      const gap = (now - this.last) / 1000 / count;
      for (let i = 0; i < count; i++) this.metrics.itl.observe({ model: this.model }, gap);
    }
    this.last = now;
    this.metrics.generationTokens.inc({ model: this.model }, count);
  }

  onFinish(finishReason: string, numPromptTokens: number | undefined): void {
    const ms = performance.now() - this.start;
    this.metrics.requestLatency.observe({ model: this.model }, ms / 1000);
    this.metrics.djlRequestLatency.set({ Model: this.model }, Math.round(ms * 1000));
    this.metrics.finished.inc({ model: this.model, finish_reason: finishReason });
    if (numPromptTokens) this.metrics.promptTokens.inc({ model: this.model }, numPromptTokens);
  }
}
