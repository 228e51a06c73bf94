// The engine on its own thread (option.engine_thread): ThreadEngine against the in-thread Engine with the
// CPU executor and the committed model zoo. Same deltas for the same requests (greedy goldens, batched),
// refusals reject the first iteration with the same error class, aborts end a stream and free its blocks,
// stats follow the thread's engine, and a dead thread ends every open stream with an error, refuses new
// requests with EngineDeadError and tells onDeath listeners once. shutdown() is not a death.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import type { RequestOutput } from "../../src/engine/protocol.ts";
import { validateParameters } from "../../src/engine/sampling-params.ts";
import { ThreadEngine } from "../../src/engine/thread/thread-engine.ts";
import { EngineDeadError, PromptTooLongError, ValidationError } from "../../src/errors.ts";
import { REPO_ROOT } from "./fixtures.ts";
import { runGeneration } from "./run-generation.ts";

const ZOO = join(REPO_ROOT, "models", "zoo");
const quiet = { warn: () => {}, info: () => {} };

function start(model: string, opts: { maxModelLen?: number } = {}) {
  const modelDir = join(ZOO, model);
  return ThreadEngine.start({
    modelDir,
    executor: { kind: "cpu", options: { modelDir, blockSize: 4 } },
    options: { logger: quiet, maxModelLen: opts.maxModelLen },
  });
}

const run = runGeneration;

describe("ThreadEngine (the engine on its own thread)", () => {
  it("llama: every golden case in one batch, token- and text-exact, one finished delta each", async () => {
    const cases = JSON.parse(readFileSync(join(ZOO, "llama", "golden.json"), "utf8")).cases as Array<{
      prompt: string;
      greedy: { max_new_tokens: number; ids: number[]; text: string };
    }>;
    const engine = await start("llama");
    try {
      assert.equal(engine.modelInfo.architecture.length > 0, true);
      const results = await Promise.all(
        cases.map((c, i) => run(engine, `g${i}`, c.prompt, { max_new_tokens: c.greedy.max_new_tokens })),
      );
      results.forEach((r, i) => {
        assert.deepEqual(r.ids, cases[i].greedy.ids, `case ${i}`);
        assert.equal(r.last.finishReason, "length");
        assert.equal(r.outs.filter((o) => o.finished).length, 1);
        assert.equal(r.outs.map((o) => o.textDelta).join(""), cases[i].greedy.text);
      });
      const s = engine.stats();
      assert.equal(s.numRunning, 0);
      assert.ok(s.numGenerationTokensTotal >= results.reduce((n, r) => n + r.ids.length, 0));
    } finally {
      await engine.shutdown();
    }
  });

  it("refusals reject the first iteration with the engine's error class; the engine keeps serving", async () => {
    const engine = await start("llama", { maxModelLen: 8 });
    try {
      await assert.rejects(
        run(engine, "long", "a b c d e f g h i j k l m n o p", { max_new_tokens: 2 }),
        (e: unknown) =>
          e instanceof PromptTooLongError && e.status === 424 && /at most 8 tokens/.test(e.message),
      );
      await assert.rejects(
        run(engine, "bias", "hi", { max_new_tokens: 2, logit_bias: { 99999999: 1 } }),
        (e: unknown) => e instanceof ValidationError && e.field === "logit_bias",
      );
      const ok = await run(engine, "ok", "hi", { max_new_tokens: 2 });
      assert.equal(ok.ids.length, 2);
    } finally {
      await engine.shutdown();
    }
  });

  it("an abort ends the stream with finishReason abort and frees the request", async () => {
    const engine = await start("llama");
    try {
      const ac = new AbortController();
      const outs: RequestOutput[] = [];
      for await (const o of engine.generate(
        {
          requestId: "a",
          prompt: "hello",
          params: validateParameters({ max_new_tokens: 200, ignore_eos: true }).params,
        },
        ac.signal,
      )) {
        outs.push(o);
        if (outs.length === 2) ac.abort();
      }
      assert.equal(outs.at(-1)!.finishReason, "abort");
      assert.ok(outs.length < 50, `${outs.length} deltas`);
      // A consumer that just stops reading is an abort too; the engine then runs nothing.
      for await (const _ of engine.generate({
        requestId: "b",
        prompt: "hello",
        params: validateParameters({ max_new_tokens: 200, ignore_eos: true }).params,
      })) {
        break;
      }
      await run(engine, "c", "hi", { max_new_tokens: 1 }); // a step after the aborts
      assert.equal(engine.stats().numRunning, 0);
    } finally {
      await engine.shutdown();
    }
  });

  it("an HTTP thread slower than the engine still runs its timers (the engine waits for each batch to be taken)", async () => {
    const engine = await start("llama");
    try {
      // Counted in deltas, not milliseconds, so a loaded machine cannot make it pass or fail: how many deltas the
      // consumers handle between two runs of this thread's timer. Each batch is followed by a turn of the loop
      // (where the timer runs) and holds a few steps' deltas at most; an engine that floods the port keeps the
      // timer from running for as long as it is ahead.
      let sinceTick = 0;
      let maxBetweenTicks = 0;
      const timer = setInterval(() => {
        sinceTick = 0;
      }, 1);
      const params = validateParameters({ max_new_tokens: 60, ignore_eos: true }).params;
      const streams = [0, 1, 2, 3, 4, 5].map(async (i) => {
        let n = 0;
        for await (const o of engine.generate({ requestId: `s${i}`, prompt: "hello there", params })) {
          n += o.tokens.length;
          maxBetweenTicks = Math.max(maxBetweenTicks, ++sinceTick);
          const end = performance.now() + 4; // a slow consumer: 6 streams x 4 ms per delta
          while (performance.now() < end);
        }
        return n;
      });
      const counts = await Promise.all(streams);
      clearInterval(timer);
      assert.deepEqual(counts, [60, 60, 60, 60, 60, 60]);
      // At most: the batch in flight, two more steps' deltas and the executor's two steps in flight, 6 streams each.
      assert.ok(maxBetweenTicks <= 5 * 6, `${maxBetweenTicks} deltas handled between two runs of the timer`);
    } finally {
      await engine.shutdown();
    }
  });

  it("a dead thread ends open streams with an error, refuses new requests, and calls onDeath once", async () => {
    const engine = await start("llama");
    const deaths: string[] = [];
    engine.onDeath((r) => deaths.push(r));
    const params = validateParameters({ max_new_tokens: 10_000, ignore_eos: true }).params;
    const outs: RequestOutput[] = [];
    const stream = (async () => {
      for await (const o of engine.generate({ requestId: "x", prompt: "hello", params })) {
        outs.push(o);
        if (outs.length === 1) await engine.worker.terminate();
      }
    })();
    await stream;
    assert.equal(outs.at(-1)!.finished, true);
    assert.equal(outs.at(-1)!.finishReason, "error");
    assert.match(outs.at(-1)!.error ?? "", /engine thread exited/);
    assert.deepEqual(deaths.length, 1);
    await assert.rejects(run(engine, "y", "hi", { max_new_tokens: 1 }), EngineDeadError);
    await engine.shutdown(); // resolves at once: the thread is gone
  });

  it("shutdown is not a death; a load failure rejects start() with its error", async () => {
    const engine = await start("llama");
    const deaths: string[] = [];
    engine.onDeath((r) => deaths.push(r));
    await engine.shutdown();
    assert.deepEqual(deaths, []);
    await assert.rejects(run(engine, "z", "hi", { max_new_tokens: 1 }), EngineDeadError);
    await assert.rejects(
      ThreadEngine.start({
        modelDir: join(ZOO, "llama"),
        executor: { kind: "cpu", options: { modelDir: join(REPO_ROOT, "no-such-model"), blockSize: 4 } },
        options: { logger: quiet },
      }),
      /no-such-model/,
    );
  });
});
