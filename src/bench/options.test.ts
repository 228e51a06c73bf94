// Flag parsing through the real `lmi` program: bad values are rejected naming the flag, flag
// combinations that make no sense name the flag to change, and defaults resolve per backend.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Command, CommanderError } from "commander";
import { register } from "../commands/bench.ts";
import { BenchError } from "./errors.ts";
import { type BenchFlags, parseGoodput, resolveConfig } from "./options.ts";

/** Parses `lmi bench ...args` without running the action; returns the flags or the parse error text. */
function parse(args: string[]): BenchFlags | string {
  const program = new Command().exitOverride();
  let stderr = "";
  program.configureOutput({ writeErr: (s) => (stderr += s), writeOut: () => {} });
  register(program);
  const bench = program.commands[0];
  bench.exitOverride().configureOutput({ writeErr: (s) => (stderr += s), writeOut: () => {} });
  let flags: BenchFlags | null = null;
  bench.action((f: BenchFlags) => {
    flags = f;
  });
  try {
    program.parse(["node", "lmi", "bench", ...args]);
  } catch (err) {
    if (err instanceof CommanderError) return stderr;
    throw err;
  }
  return flags ?? "no action";
}

function config(args: string[]) {
  const f = parse(args);
  if (typeof f === "string") throw new Error(f);
  return resolveConfig(f);
}

test("bad single values name their flag", () => {
  const cases: Array<[string[], RegExp]> = [
    [["--num-prompts", "0"], /--num-prompts/],
    [["--random-range-ratio", "1"], /--random-range-ratio.*\[0, 1\)/],
    [["--request-rate", "-2"], /--request-rate/],
    [["--burstiness", "0"], /--burstiness/],
    [["--sweep-concurrency", "1,x"], /--sweep-concurrency/],
    [["--metric-percentiles", "90,100"], /--metric-percentiles/],
    [["--backend", "vllm"], /--backend.*lmi, openai, openai-chat, tgi/],
    [["--extra-body", "[1]"], /--extra-body.*JSON object/],
    [["--max-concurrency", "1.5"], /--max-concurrency/],
  ];
  for (const [args, re] of cases) {
    const r = parse(args);
    assert.equal(typeof r, "string", args.join(" "));
    assert.match(r as string, re, args.join(" "));
  }
});

test("defaults follow vllm bench serve, with the endpoint chosen by backend", () => {
  const c = config([]);
  assert.equal(c.url, "http://127.0.0.1:8080/invocations");
  assert.equal(c.numPrompts, 1000);
  assert.equal(c.randomInputLen, 1024);
  assert.equal(c.randomOutputLen, 128);
  assert.equal(c.requestRate, Number.POSITIVE_INFINITY);
  assert.equal(c.burstiness, 1);
  assert.equal(c.randomPromptKind, "text"); // /invocations takes text
  assert.deepEqual(c.metricPercentiles, [90, 99]);
  assert.equal(c.progress, true);
  const o = config(["--backend", "openai", "--base-url", "http://h:1/prefix/", "--request-rate", "inf"]);
  assert.equal(o.url, "http://h:1/prefix/v1/completions");
  assert.equal(o.randomPromptKind, "ids");
  assert.equal(config(["--request-rate", "2.5"]).requestRate, 2.5);
  assert.equal(config(["--no-progress"]).progress, false);
});

test("flag combinations that cannot work name the flag to change", () => {
  const bad: Array<[string[], string]> = [
    [["--random-prompt-kind", "ids"], "--random-prompt-kind"],
    [["--backend", "tgi", "--ignore-eos"], "--ignore-eos"],
    [["--dataset-name", "jsonl"], "--dataset-path"],
    [["--dataset-path", "x.jsonl"], "--dataset-path"],
    [["--prompts-per-concurrency", "2"], "--prompts-per-concurrency"],
    [["--sweep-concurrency", "1,2", "--max-concurrency", "2"], "--max-concurrency"],
    [["--chart", "x.svg"], "--chart"],
    [["--base-url", "localhost:8080"], "--base-url"],
    [["--endpoint", "v1/completions"], "--endpoint"],
    [["--goodput", "ttft=5"], "--goodput"],
  ];
  for (const [args, flag] of bad) {
    assert.throws(
      () => config(args),
      (e: unknown) => e instanceof BenchError && e.flag === flag && e.message.startsWith(flag),
      args.join(" "),
    );
  }
});

test("--goodput takes ttft/tpot/e2el in ms", () => {
  assert.deepEqual(parseGoodput(["ttft:200", "tpot:50.5", "e2el:0"]), {
    ttftMs: 200,
    tpotMs: 50.5,
    e2elMs: 0,
  });
  assert.deepEqual(config(["--goodput", "ttft:200", "tpot:50"]).slo, { ttftMs: 200, tpotMs: 50 });
  assert.throws(() => parseGoodput(["itl:5"]), BenchError);
  assert.throws(() => parseGoodput(["ttft:-1"]), BenchError);
});
