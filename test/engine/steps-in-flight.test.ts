// The engine with the Python executor (CPU torch) keeping one, two or three steps in flight
// (LMI_STEPS_IN_FLIGHT): the same greedy tokens, the same finish reasons, and a stop token that
// arrives while later steps for its request are already sent ends the request at that token; the same at tensor
// parallel degree 2.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { createLlmEngine } from "../../src/engine/engine.ts";
import { cpuTorchExecutor } from "../../src/executor/python/testing/cpu-torch-executor.ts";
import { torchMissing } from "../../src/executor/python/testing/python-env.ts";
import { runGeneration } from "./run-generation.ts";

const ZOO_LLAMA = fileURLToPath(new URL("../../models/zoo/llama", import.meta.url));

async function generateAll(depth: number, stopC?: number, tensorParallelDegree = 1) {
  const executor = cpuTorchExecutor(ZOO_LLAMA, {
    tensorParallelDegree,
    env: { LMI_STEPS_IN_FLIGHT: String(depth) },
  });
  const engine = await createLlmEngine({ executor, modelDir: ZOO_LLAMA });
  try {
    assert.equal(executor.maxStepsInFlight, depth);
    const runs: Array<[string, string, Record<string, unknown>]> = [
      ["a", "In the beginning", { max_new_tokens: 9 }],
      ["b", "And God said", { max_new_tokens: 4 }],
      ["c", "Let there be light", { max_new_tokens: 12 }],
    ];
    if (stopC !== undefined) {
      runs.push(["d", "Let there be light", { max_new_tokens: 12, stop_token_ids: [stopC] }]);
    }
    const outs = await Promise.all(
      runs.map(([id, prompt, p]) => runGeneration(engine, id, prompt, { ...p, do_sample: false })),
    );
    return Object.fromEntries(outs.map((o, i) => [runs[i][0], { ids: o.ids, reason: o.last.finishReason }]));
  } finally {
    await engine.shutdown();
  }
}

describe("steps in flight with the Python executor (CPU torch)", { skip: torchMissing ?? false }, () => {
  it("one, two and three steps in flight generate the same tokens; a stop token ends its request there", async () => {
    const one = await generateAll(1);
    assert.deepEqual(
      Object.values(one).map((r) => r.ids.length),
      [9, 4, 12],
    );
    // "d" is "c" stopped at its fourth token: with three steps in flight, two more of its steps are sent by then.
    const stop = one.c.ids[3];
    const want = {
      ...one,
      d: { ids: one.c.ids.slice(0, one.c.ids.indexOf(stop) + 1), reason: "stop_sequence" },
    };
    for (const depth of [2, 3]) assert.deepEqual(await generateAll(depth, stop), want, `depth ${depth}`);
    // Two ranks (gloo): rank 0 relays each of the three plans in flight, and the other rank launches them ahead too.
    assert.deepEqual(await generateAll(3, stop, 2), want, "depth 3, tensor parallel degree 2");
  });
});
