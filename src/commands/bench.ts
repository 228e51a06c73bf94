// `lmi bench`: a serving benchmark client with the semantics of `vllm bench serve` (perf-anchors §4.1),
// for our LMI /invocations, OpenAI completions/chat and TGI-style servers. This module only declares the
// flags; parsing rules live in src/bench/options.ts and the run in src/bench/bench.ts (loaded lazily).
import type { Command } from "commander";
import { BACKEND_NAMES } from "../bench/backends.ts";
import {
  type BenchFlags,
  intList,
  jsonObject,
  nonNegativeInt,
  oneOf,
  percentileList,
  positiveInt,
  positiveNumber,
  rangeRatio,
  requestRate,
} from "../bench/options.ts";

export function register(program: Command): void {
  program
    .command("bench")
    .description(
      "Benchmark a running server with streaming requests (vLLM `bench serve` metrics: TTFT, TPOT, ITL, E2EL, " +
        "throughput, goodput). Backends: lmi (/invocations jsonlines), openai (/v1/completions SSE), " +
        "openai-chat (/v1/chat/completions SSE), tgi (/generate_stream SSE). See docs/bench.md.",
    )
    .option("--backend <name>", `wire protocol: ${BACKEND_NAMES.join(", ")}`, oneOf(BACKEND_NAMES), "lmi")
    .option("--base-url <url>", "server address", "http://127.0.0.1:8080")
    .option("--endpoint <path>", "request path (default by backend: /invocations, /v1/completions, ...)")
    .option("--model <name>", "model name sent in OpenAI bodies")
    .option(
      "--tokenizer <dir>",
      "model folder whose tokenizer.json builds text prompts and counts their tokens",
    )
    .option("--dataset-name <name>", "random or jsonl", oneOf(["random", "jsonl"] as const), "random")
    .option("--dataset-path <file>", 'JSONL prompts: {"prompt": text|ids, "output_len"?, "prompt_len"?}')
    .option("--num-prompts <n>", "requests to send (per sweep level)", positiveInt, 1000)
    .option("--random-input-len <n>", "random dataset: prompt tokens", positiveInt, 1024)
    .option("--random-output-len <n>", "random dataset: output tokens", positiveInt, 128)
    .option("--random-range-ratio <r>", "lengths uniform in [len*(1-r), len*(1+r)]", rangeRatio, 0)
    .option(
      "--random-prompt-kind <kind>",
      "ids (token-id prompts; openai only) or text (decoded with --tokenizer); default ids where accepted",
      oneOf(["ids", "text"] as const),
    )
    .option(
      "--random-vocab-size <n>",
      "id range for token-id prompts when no --tokenizer is given",
      positiveInt,
    )
    .option("--jsonl-output-len <n>", "output length for JSONL lines without output_len", positiveInt)
    .option(
      "--request-rate <r>",
      "requests per second, or inf (all at once)",
      requestRate,
      Number.POSITIVE_INFINITY,
    )
    .option("--burstiness <b>", "gamma shape of arrival gaps: 1 = Poisson, <1 burstier", positiveNumber, 1)
    .option("--max-concurrency <n>", "at most n requests in flight", positiveInt)
    .option("--num-warmups <n>", "unmeasured warm-up requests before the run", nonNegativeInt, 0)
    .option("--ignore-eos", "generate exactly the requested length (ignore_eos_token / ignore_eos)")
    .option("--seed <n>", "seed for prompts and arrivals", nonNegativeInt, 0)
    .option("--metric-percentiles <list>", "percentiles to report", percentileList, [90, 99])
    .option("--goodput <slo...>", "SLOs in ms, e.g. ttft:200 tpot:50 e2el:5000")
    .option("--request-timeout <s>", "per-request timeout in seconds", positiveNumber, 600)
    .option("--extra-body <json>", "JSON object merged into every request body", jsonObject)
    .option("--result-file <path>", "write the JSON result here")
    .option("--sweep-concurrency <list>", "run once per max-concurrency level, e.g. 1,4,16,64", intList)
    .option("--prompts-per-concurrency <k>", "sweep: send k x concurrency requests per level", positiveInt)
    .option(
      "--chart <path>",
      "sweep chart (SVG); default: the result file with .svg, else lmi-bench-sweep.svg",
    )
    .option("--label <name>", "series name in the result and chart (default: the backend)")
    .option("--no-progress", "no progress bar")
    .action(async (flags: BenchFlags) => {
      const { resolveConfig } = await import("../bench/options.ts");
      const { BenchError } = await import("../bench/errors.ts");
      const { runBench } = await import("../bench/bench.ts");
      try {
        await runBench(resolveConfig(flags));
      } catch (err) {
        process.stderr.write(`lmi bench: ${(err as Error).message}\n`);
        process.exitCode = err instanceof BenchError ? 2 : 1;
      }
    });
}
