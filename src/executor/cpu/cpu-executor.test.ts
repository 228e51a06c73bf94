import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { PlanDriver, samplingSettings } from "../../../test/conformance/plan-driver.ts";
import { ExecutorError } from "../../errors.ts";
import { createCpuExecutor } from "./cpu-executor.ts";
import { InThreadCpuExecutor } from "./in-thread-executor.ts";
import { writeRandomModel } from "./testing/random-model.ts";

const dir = writeRandomModel(mkdtempSync(join(tmpdir(), "cpuex-")), { family: "llama", vocab: 53 });
const PROMPT = [4, 8, 15, 16, 23, 42];

test("the worker-thread executor generates what the in-thread runner generates", async () => {
  const ex = createCpuExecutor({ modelDir: dir, blockSize: 4, kvCacheBytes: 1 << 20 });
  try {
    const info = await ex.load();
    assert.equal(info.architecture, "LlamaForCausalLM");
    assert.equal(info.vocabSize, 53);
    assert.deepEqual(info.eosTokenIds, [1]);
    assert.equal(info.maxModelLen, 256);
    const prof = await ex.profile();
    await ex.initCache(prof.numBlocks);
    assert.deepEqual(await ex.health(), { ok: true });
    const d = new PlanDriver(ex, 4, prof.numBlocks);
    d.add("a", PROMPT, samplingSettings(), 10);
    await d.runToCompletion();

    const local = new InThreadCpuExecutor({ modelDir: dir, blockSize: 4 });
    await local.load();
    await local.initCache(64);
    const d2 = new PlanDriver(local, 4, 64);
    d2.add("a", PROMPT, samplingSettings(), 10);
    await d2.runToCompletion();
    assert.deepEqual(d.reqs.get("a")!.generated, d2.reqs.get("a")!.generated);
    await assert.rejects(
      ex.initCache(-1),
      (e: Error) => e instanceof ExecutorError && /bad block count/.test(e.message),
    );
  } finally {
    await ex.shutdown();
  }
  await assert.rejects(
    ex.health().then((h) => (h.ok ? Promise.resolve() : Promise.reject(new Error(h.detail)))),
    /shut down/,
  );
});

test("a dying thread rejects the in-flight call, fires onDeath once and fails later calls", async () => {
  const ex = createCpuExecutor({ modelDir: dir, blockSize: 4, kvCacheBytes: 1 << 20 });
  const deaths: Error[] = [];
  ex.onDeath((e) => deaths.push(e));
  await ex.load();
  // The thread is told to stop first, so the call below is still unanswered when it dies (the other order
  // raced: under load the tiny model's profile() could be answered before the thread stopped).
  void ex.worker.terminate();
  const inFlight = ex.profile();
  await assert.rejects(inFlight, ExecutorError);
  await assert.rejects(ex.initCache(4), /exited/);
  assert.equal(deaths.length, 1);
  assert.equal((await ex.health()).ok, false);
});

test("the worker starts under tsx's register() API from another cwd (as bin/lmi.mjs runs it)", () => {
  const root = fileURLToPath(new URL("../../../", import.meta.url));
  const script = `
    import { register } from ${JSON.stringify(join(root, "node_modules/tsx/dist/esm/api/index.mjs"))};
    register();
    const { createCpuExecutor } = await import(${JSON.stringify(join(root, "src/executor/cpu/index.ts"))});
    const ex = createCpuExecutor({ modelDir: ${JSON.stringify(dir)} });
    const info = await ex.load();
    console.log("ARCH", info.architecture);
    await ex.shutdown();
  `;
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
    cwd: tmpdir(),
    encoding: "utf8",
  });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /ARCH LlamaForCausalLM/);
});
