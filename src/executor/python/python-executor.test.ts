import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { PlanDriver, samplingSettings } from "../../../test/conformance/plan-driver.ts";
import { ConfigError, ExecutorError } from "../../errors.ts";
import { InThreadCpuExecutor } from "../cpu/in-thread-executor.ts";
import type { Executor, ModelRunnerOutput, SamplingSettings } from "../types.ts";
import { createPythonExecutor, type PythonExecutor } from "./python-executor.ts";
import { cpuTorchExecutor } from "./testing/cpu-torch-executor.ts";
import { greedySettings, PlanBuilder } from "./testing/plan-builder.ts";
import { denseGreedy, makeTinyCheckpoint, torchMissing } from "./testing/python-env.ts";

const skip = torchMissing ?? false;
const quiet = () => {};

async function started(ex: PythonExecutor): Promise<{ numBlocks: number }> {
  await ex.load();
  const prof = await ex.profile();
  await ex.initCache(prof.numBlocks);
  return prof;
}

/** Generates `steps` tokens for each prompt (greedy unless `sampling` names the request's settings), all
 * requests in one batch; with `ahead`, each step is sent before the previous one's reply is back (two in flight,
 * as the engine pipelines steps). */
async function generate(
  ex: PythonExecutor,
  numBlocks: number,
  prompts: Record<string, number[]>,
  steps: number,
  ahead = false,
  sampling: Record<string, SamplingSettings> = {},
) {
  const pb = new PlanBuilder(numBlocks, 4);
  let pending: Promise<ModelRunnerOutput> | null = null;
  for (let s = 0; s < steps; s++) {
    const plan =
      s === 0
        ? pb.plan({
            add: Object.entries(prompts).map(([id, prompt]) => ({ id, prompt, sampling: sampling[id] })),
          })
        : pb.plan({ run: Object.keys(prompts).map((id) => ({ id, n: 1 })) });
    pb.advance(plan);
    const sent = ex.execute(plan);
    if (!ahead) {
      pb.append(await sent);
      continue;
    }
    if (pending !== null) pb.append(await pending);
    pending = sent;
  }
  if (pending !== null) pb.append(await pending);
  return Object.fromEntries(Object.keys(prompts).map((id) => [id, pb.generated(id)]));
}

describe("python executor over the protocol (CPU torch)", { skip }, () => {
  let dir = "";
  before(() => {
    dir = makeTinyCheckpoint("llama", 0);
  });

  it("loads, profiles and generates the dense reference's greedy tokens", async () => {
    const ex = cpuTorchExecutor(dir);
    try {
      const info = await ex.load();
      assert.equal(info.architecture, "LlamaForCausalLM");
      assert.equal(info.vocabSize, 97);
      assert.equal(info.maxModelLen, 256);
      assert.deepEqual(info.eosTokenIds, [2]);
      const prof = await ex.profile();
      // 2 layers x K,V x 4 tokens x 2 kv heads x 16 dims x 4 bytes (fp32 on the CPU).
      assert.equal(prof.bytesPerBlock, 2 * 2 * 4 * 2 * 16 * 4);
      // The budget also holds the executor's own 33 blocks (graph padding, contrastive search's look-ahead).
      assert.equal(prof.numBlocks, Math.floor((1 << 20) / prof.bytesPerBlock) - 33);
      // Contrastive search's hidden-state pool: max(2 x 8,192 batched tokens, 256 model positions), in 256s.
      assert.equal(prof.contrastiveChunk, 256);
      assert.equal(prof.contrastivePositions, 16_384);
      await ex.initCache(prof.numBlocks);
      const prompt = [5, 17, 42, 8, 91, 33];
      const got = await generate(ex, prof.numBlocks, { a: prompt }, 8);
      assert.deepEqual(got.a, denseGreedy(dir, "llama", 0, prompt, 8));
      assert.equal((await ex.health()).ok, true);
    } finally {
      await ex.shutdown();
    }
  });

  it("answers a bad plan with an ExecutorError and keeps serving", async () => {
    const ex = cpuTorchExecutor(dir);
    try {
      const { numBlocks } = await started(ex);
      const pb = new PlanBuilder(numBlocks, 4);
      const bad = pb.plan({ add: [{ id: "a", prompt: [1, 2, 3], n: 5 }] }); // more tokens than known
      await assert.rejects(
        ex.execute(bad),
        (e: unknown) => e instanceof ExecutorError && /only 3 are known/.test(e.message),
      );
      const ok = await generate(ex, numBlocks, { b: [4, 5, 6] }, 2);
      assert.equal(ok.b.length, 2);
    } finally {
      await ex.shutdown();
    }
  });

  it("reports prompt logprobs with none for position 0 and sampled-token logprobs", async () => {
    const ex = cpuTorchExecutor(dir);
    try {
      const { numBlocks } = await started(ex);
      const pb = new PlanBuilder(numBlocks, 4);
      const plan = pb.plan({
        add: [
          {
            id: "a",
            prompt: [3, 4, 5, 6, 7],
            sampling: greedySettings({ promptLogprobs: true, numTopLogprobs: 2 }),
          },
        ],
      });
      const out = await ex.execute(plan);
      const plp = out.promptLogprobs.a;
      assert.equal(plp.length, 5);
      assert.equal(plp[0], null);
      for (const e of plp.slice(1)) {
        assert.ok(e && e.logprob < 0 && e.top.length === 2 && e.top[0][1] >= e.top[1][1]);
      }
      const lp = out.logprobs.a[0];
      // Greedy picks the most likely token, so its logprob is the top alternative's.
      assert.equal(out.sampledTokenIds.a[0], lp.top[0][0]);
      assert.ok(Math.abs(lp.logprob - lp.top[0][1]) < 1e-9);
    } finally {
      await ex.shutdown();
    }
  });

  it("tensor parallel degree 2 (gloo on the CPU) generates what degree 1 does, with steps launched ahead too", async () => {
    const q3 = makeTinyCheckpoint("qwen3", 4);
    const prompts = { a: [9, 8, 7, 6, 5, 4], b: [1, 2, 3] };
    const one = cpuTorchExecutor(q3);
    const two = cpuTorchExecutor(q3, { tensorParallelDegree: 2 });
    const three = cpuTorchExecutor(q3, { tensorParallelDegree: 2, env: { LMI_STEPS_IN_FLIGHT: "2" } });
    try {
      const p1 = await started(one);
      const want = await generate(one, p1.numBlocks, prompts, 6);
      const p2 = await started(two);
      assert.equal(two.pids.length, 2);
      assert.deepEqual(await generate(two, p2.numBlocks, prompts, 6), want);
      // Every rank launches a step before the previous one finishes (rank 0 relays over a CPU group); the engine
      // keeps three in flight by default.
      assert.equal(two.maxStepsInFlight, 3);
      const p3 = await started(three);
      // The executor's hello allows three (its output ring holds four steps); LMI_STEPS_IN_FLIGHT=2 asks for two.
      assert.equal(three.hello?.maxStepsInFlight, 3);
      assert.equal(three.maxStepsInFlight, 2);
      assert.deepEqual(await generate(three, p3.numBlocks, prompts, 6, true), want);
    } finally {
      await one.shutdown();
      await two.shutdown();
      await three.shutdown();
    }
  });

  it("contrastive search picks what the TypeScript CPU executor picks, alone, beside greedy and at degree 2", async () => {
    const q2 = makeTinyCheckpoint("qwen2", 6);
    const s = samplingSettings({ strategy: "contrastive", topK: 4, penaltyAlpha: 0.6 });
    const run = async (ex: Executor, numBlocks: number) => {
      const d = new PlanDriver(ex, 4, numBlocks, 7); // a 7-token budget: the 10-token prompt is chunked
      d.add("c", [9, 8, 7, 6, 5, 4, 3, 2, 1, 11], s, 9);
      d.add("g", [4, 5, 6], samplingSettings(), 9);
      await d.runToCompletion();
      return { c: d.reqs.get("c")!.generated, g: d.reqs.get("g")!.generated };
    };
    const ts = new InThreadCpuExecutor({ modelDir: q2, blockSize: 4 });
    await ts.load();
    await ts.initCache(64);
    const want = await run(ts, 64);
    const one = cpuTorchExecutor(q2);
    const two = cpuTorchExecutor(q2, { tensorParallelDegree: 2 });
    try {
      const p1 = (await started(one)).numBlocks;
      assert.deepEqual(await run(one, p1), want);
      assert.deepEqual(await run(two, (await started(two)).numBlocks), want);
      // Steps sent two at a time, as the engine pipelines them: a contrastive step waits for the one before it.
      // (Each call's requests take ids of their own: the executor keeps the earlier ones' rows.)
      const [c, g] = [
        [3, 1, 4, 1, 5, 9, 2],
        [2, 7, 1, 8],
      ];
      const seq = await generate(one, p1, { c1: c, g1: g }, 7, false, { c1: s });
      const ahead = await generate(one, p1, { c2: c, g2: g }, 7, true, { c2: s });
      assert.deepEqual([ahead.c2, ahead.g2], [seq.c1, seq.g1]);
      assert.notDeepEqual(seq.c1, (await generate(one, p1, { c3: c }, 7)).c3); // (greedy continues otherwise)
    } finally {
      await one.shutdown();
      await two.shutdown();
    }
  });

  it("the step log has each rank's wait for its plan and rank 0's relay time; the wire log each plan's round trip", async () => {
    const dir = mkdtempSync(join(tmpdir(), "lmi-steplog-"));
    const log = join(dir, "steps.jsonl");
    const wire = join(dir, "wire.jsonl");
    const ex = cpuTorchExecutor(makeTinyCheckpoint("llama", 7), {
      tensorParallelDegree: 2,
      env: { LMI_STEP_LOG: log, LMI_WIRE_LOG: wire },
    });
    try {
      const { numBlocks } = await started(ex);
      await generate(ex, numBlocks, { a: [1, 2, 3], b: [4, 5] }, 4, true);
    } finally {
      await ex.shutdown();
    }
    const lines = readFileSync(log, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    assert.equal(lines.length, 8, "4 steps on each of 2 ranks");
    for (const l of lines) {
      assert.ok(l.planWaitMs >= 0 && l.relayMs >= 0, JSON.stringify(l));
    }
    // Only rank 0 relays; a follower's relay is inside its wait (0 here).
    assert.ok(lines.some((l) => l.relayMs > 0));
    assert.ok(lines.some((l) => l.relayMs === 0));
    assert.deepEqual(lines.map((l) => l.rank).sort(), [0, 0, 0, 0, 1, 1, 1, 1]);
    const sent = readFileSync(wire, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    assert.equal(sent.length, 4);
    for (const w of sent) {
      const r0 = lines.find((l) => l.rank === 0 && l.step === w.stepId);
      assert.ok(r0, `step ${w.stepId} in rank 0's log`);
      // plan sent <= launch ended <= seen done <= reply back (epoch ms against epoch s; 5 ms of clock slack)
      assert.ok(
        w.ok && w.sentAt <= r0.t * 1e3 + 5 && r0.t <= r0.doneAt && r0.doneAt * 1e3 <= w.replyAt + 5,
        JSON.stringify([w, r0]),
      );
    }
  });

  it("mpi_mode starts the ranks through mpirun with Open MPI's rank variables", async () => {
    // A stand-in for mpirun: records its arguments, then starts -np copies with OMPI_COMM_WORLD_* set.
    const bin = mkdtempSync(join(tmpdir(), "lmi-fake-mpirun-"));
    const fake = join(bin, "mpirun");
    writeFileSync(
      fake,
      [
        "#!/usr/bin/env bash",
        'echo "$@" > "$(dirname "$0")/args"',
        "np=1",
        "while [ $# -gt 0 ]; do case $1 in",
        "  --allow-run-as-root) shift;; --bind-to) shift 2;; -np) np=$2; shift 2;; -x) shift 2;; *) break;;",
        "esac; done",
        'for r in $(seq 0 $((np - 1))); do OMPI_COMM_WORLD_RANK=$r OMPI_COMM_WORLD_SIZE=$np "$@" & done',
        "wait",
      ].join("\n"),
      { mode: 0o755 },
    );
    const q3 = makeTinyCheckpoint("qwen3", 5);
    const prompts = { a: [4, 5, 6, 7], b: [9, 9, 9] };
    const one = cpuTorchExecutor(q3);
    const mpi = cpuTorchExecutor(q3, { tensorParallelDegree: 2, mpiMode: true, mpirunExecutable: fake });
    try {
      const p1 = await started(one);
      const want = await generate(one, p1.numBlocks, prompts, 5);
      const p2 = await started(mpi);
      assert.equal(mpi.pids.length, 1, "one mpirun process");
      assert.deepEqual(await generate(mpi, p2.numBlocks, prompts, 5), want);
      const args = readFileSync(join(bin, "args"), "utf8");
      assert.match(args, /-np 2 /);
      assert.match(args, /-x NCCL_NVLS_ENABLE/);
      assert.match(args, /-m lmi_executor --socket /);
    } finally {
      await one.shutdown();
      await mpi.shutdown();
    }
  });

  it("a killed rank fails the executor once, through onDeath and later calls", async () => {
    const ex = cpuTorchExecutor(dir);
    const deaths: Error[] = [];
    ex.onDeath((e) => deaths.push(e));
    const { numBlocks } = await started(ex);
    const died = new Promise<void>((resolve) => ex.onDeath(() => resolve()));
    process.kill(ex.pids[0], "SIGKILL");
    await died;
    assert.equal(deaths.length, 1);
    assert.ok(deaths[0] instanceof ExecutorError);
    assert.match(deaths[0].message, /SIGKILL|closed its socket/);
    const pb = new PlanBuilder(numBlocks, 4);
    await assert.rejects(ex.execute(pb.plan({ add: [{ id: "a", prompt: [1] }] })), /executor is dead/);
    assert.equal((await ex.health()).ok, false);
    await ex.shutdown();
    assert.equal(deaths.length, 1);
  });

  it("names the missing config when the model folder is wrong", async () => {
    const ex = cpuTorchExecutor(join(tmpdir(), "no-such-model-dir"));
    try {
      await assert.rejects(ex.load(), /config\.json/);
    } finally {
      await ex.shutdown();
    }
  });

  after(() => {});
});

describe("python executor supervision without torch", () => {
  it("refuses an LMI_STEPS_IN_FLIGHT that is not a whole number of at least 1, by name", () => {
    for (const bad of ["0", "-1", "two", "2.5"]) {
      assert.throws(
        () => createPythonExecutor({ modelDir: ".", env: { LMI_STEPS_IN_FLIGHT: bad } }),
        (e: Error) =>
          e instanceof ConfigError && e.message.includes(`LMI_STEPS_IN_FLIGHT`) && e.message.includes(bad),
      );
    }
  });

  it("times out a rank that never connects and kills it", async () => {
    const fake = mkdtempSync(join(tmpdir(), "lmi-fake-exec-"));
    mkdirSync(join(fake, "lmi_executor"));
    writeFileSync(join(fake, "lmi_executor", "__init__.py"), "");
    writeFileSync(join(fake, "lmi_executor", "__main__.py"), "import time\ntime.sleep(60)\n");
    const ex = createPythonExecutor({
      modelDir: fake,
      pythonExecutable: "python3",
      pythonPath: fake,
      device: "cpu",
      startupTimeoutMs: 800,
      onLog: quiet,
    });
    const t0 = Date.now();
    await assert.rejects(ex.load(), /did not start within 800 ms/);
    assert.ok(Date.now() - t0 < 5000);
    const pid = ex.pids[0];
    await new Promise((r) => setTimeout(r, 200));
    assert.throws(() => process.kill(pid, 0), /ESRCH/);
  });

  it("reports a rank that exits during startup with its output", async () => {
    const fake = mkdtempSync(join(tmpdir(), "lmi-fake-exec-"));
    mkdirSync(join(fake, "lmi_executor"));
    writeFileSync(join(fake, "lmi_executor", "__init__.py"), "");
    writeFileSync(
      join(fake, "lmi_executor", "__main__.py"),
      "import sys\nprint('no GPU here', file=sys.stderr)\nsys.exit(3)\n",
    );
    const ex = createPythonExecutor({
      modelDir: fake,
      pythonExecutable: "python3",
      pythonPath: fake,
      startupTimeoutMs: 30_000,
      onLog: quiet,
    });
    await assert.rejects(
      ex.load(),
      (e: unknown) => e instanceof ExecutorError && /code 3/.test(e.message) && /no GPU here/.test(e.message),
    );
  });
});
