// The registry's restart policy with the real engine: when the engine behind a model dies (here it is
// shut down under the registry's feet), requests get 503 at once, the registry rebuilds the model
// with its loader, /ping reports FAILED (retry_threshold 0, as LMI HEAD) and the model serves again.
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { ThreadEngine } from "../../src/engine/thread/thread-engine.ts";
import { testModelDir } from "../e2e/serve-process.ts";
import { realHarness } from "./real-model-harness.ts";

const MODEL = testModelDir();
const json = { "content-type": "application/json" };

/** Registers the test model under `name`, loaded at once, and returns its registry entry. */
async function registered(h: ReturnType<typeof realHarness>, name: string) {
  await h.registry.register({ name, url: MODEL, modelDir: MODEL, overrides: {} }, { loadedAtStartup: true })
    .ready;
  return h.registry.get(name);
}

/** Waits (up to 30 s) until the registry has replaced the backend `first` and the model is READY again. */
async function restarted(entry: { backend: unknown; status: string }, first: unknown) {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline && !(entry.backend && entry.backend !== first && entry.status === "READY")) {
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("engine death -> restart", () => {
  const h = realHarness();
  after(async () => {
    await h.registry.closeAll();
  });

  it("fails fast while dead, restarts, counts the failure, serves again", async () => {
    const entry = await registered(h, "tiny");
    const first = entry.backend;
    assert.equal(first?.kind, "engine");
    if (first?.kind !== "engine") return;
    await first.engine.shutdown();
    const dead = await h.app.inject({
      method: "POST",
      url: "/invocations",
      headers: json,
      payload: { inputs: "In the" },
    });
    assert.equal(dead.statusCode, 503);
    await restarted(entry, first);
    assert.notEqual(entry.backend, first);
    assert.equal(entry.failed, 1);
    const ping = await h.app.inject({ method: "GET", url: "/ping" });
    assert.equal(ping.statusCode, 500);
    assert.deepEqual(JSON.parse(ping.body), { tiny: { status: "FAILED" } });
    const ok = await h.app.inject({
      method: "POST",
      url: "/invocations",
      headers: json,
      payload: { inputs: "In the", parameters: { max_new_tokens: 3 } },
    });
    assert.equal(ok.statusCode, 200);
    assert.ok(h.logLines.some((l) => /backend died \(1 failures\)/.test(l)));
  });

  it("option.engine_thread: a dead engine thread is a death, and the registry restarts the model", async () => {
    const t = realHarness({ OPTION_ENGINE_THREAD: "true" });
    after(async () => {
      await t.registry.closeAll();
    });
    const entry = await registered(t, "threaded");
    const first = entry.backend;
    assert.ok(first?.kind === "engine" && first.engine instanceof ThreadEngine);
    if (first?.kind !== "engine" || !(first.engine instanceof ThreadEngine)) return;
    await first.engine.worker.terminate();
    await restarted(entry, first);
    assert.notEqual(entry.backend, first);
    assert.equal(entry.failed, 1);
    const ok = await t.app.inject({
      method: "POST",
      url: "/models/threaded/invoke",
      headers: json,
      payload: { inputs: "In the", parameters: { max_new_tokens: 3 } },
    });
    assert.equal(ok.statusCode, 200, ok.body);
  });
});
