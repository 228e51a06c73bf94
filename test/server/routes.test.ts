import assert from "node:assert/strict";
import { request } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, it } from "node:test";
import { harness } from "./harness.ts";
import { addModel, ScriptedEngine, scriptedModel } from "./scripted-engine.ts";

const words = [" In", " the", " beginning"];
const json = { "content-type": "application/json" };

describe("inference routing (spec §2.3)", () => {
  it("routes /invocations by model_name query/header, /predictions/{m}[/{v}] and /models/{m}/invoke", async () => {
    const engines = new Map<string, ScriptedEngine>();
    const { app, registry } = harness(async (spec) => {
      const e = new ScriptedEngine({ words: [` ${spec.name}`] });
      engines.set(spec.name + (spec.version ? `:${spec.version}` : ""), e);
      return scriptedModel(e);
    });
    await addModel(registry, "a");
    await addModel(registry, "b");
    await registry.register({ name: "b", version: "2", url: "/b2", overrides: {} }).ready;
    const gen = async (url: string, headers: Record<string, string> = {}) =>
      JSON.parse(
        (
          await app.inject({
            method: "POST",
            url,
            headers: { ...json, ...headers },
            payload: '{"inputs":"x"}',
          })
        ).body,
      );
    assert.deepEqual(await gen("/invocations?model_name=b"), { generated_text: " b" });
    assert.deepEqual(await gen("/invocations", { model_name: "a" }), { generated_text: " a" });
    assert.deepEqual(await gen("/predictions/a"), { generated_text: " a" });
    assert.deepEqual(await gen("/models/b/invoke"), { generated_text: " b" });
    assert.equal(engines.get("b:2")?.requests.length ?? 0, 0);
    await gen("/predictions/b/2");
    assert.equal(engines.get("b:2")?.requests.length, 1);
    // The first startup model is the default for /invocations.
    assert.deepEqual(await gen("/invocations"), { generated_text: " a" });
  });

  it("unknown model -> 404; no default model -> 400 'Parameter model_name is required.'", async () => {
    const { app, registry } = harness(async () => scriptedModel(new ScriptedEngine({ words })));
    let res = await app.inject({
      method: "POST",
      url: "/invocations",
      headers: json,
      payload: '{"inputs":"x"}',
    });
    assert.equal(res.statusCode, 400);
    assert.deepEqual(JSON.parse(res.body), {
      code: 400,
      type: "BadRequestException",
      message: "Parameter model_name is required.",
    });
    await registry.register({ name: "a", url: "/a", overrides: {} }).ready;
    await registry.register({ name: "b", url: "/b", overrides: {} }).ready;
    res = await app.inject({ method: "POST", url: "/invocations", headers: json, payload: '{"inputs":"x"}' });
    assert.equal(res.statusCode, 400);
    res = await app.inject({
      method: "POST",
      url: "/predictions/fake",
      headers: json,
      payload: '{"inputs":"x"}',
    });
    assert.equal(res.statusCode, 404);
    assert.deepEqual(JSON.parse(res.body), {
      code: 404,
      type: "ModelNotFoundException",
      message: "Model or workflow not found: fake",
    });
  });

  it("job_queue_size full -> 503 at once; the queued request still completes", async () => {
    const engine = new ScriptedEngine({ words, delayMs: 100 });
    const { app, registry } = harness(async () => scriptedModel(engine, { jobQueueSize: 1 }));
    await addModel(registry, "m");
    const first = app.inject({
      method: "POST",
      url: "/invocations",
      headers: json,
      payload: '{"inputs":"x"}',
    });
    await new Promise((r) => setTimeout(r, 20));
    const t0 = Date.now();
    const second = await app.inject({
      method: "POST",
      url: "/invocations",
      headers: json,
      payload: '{"inputs":"x"}',
    });
    assert.ok(Date.now() - t0 < 100);
    assert.equal(second.statusCode, 503);
    assert.deepEqual(JSON.parse(second.body), {
      code: 503,
      type: "WlmCapacityException",
      message: "Worker queue capacity exceeded for model: m",
    });
    assert.equal((await first).statusCode, 200);
    assert.equal(registry.get("m").inFlight, 0);
  });

  it("scaled to zero -> 503 'All model workers has been shutdown'", async () => {
    const { app, registry } = harness(async () => scriptedModel(new ScriptedEngine({ words })));
    await addModel(registry, "m");
    await registry.scale(registry.get("m"), 0, 0);
    const res = await app.inject({
      method: "POST",
      url: "/predictions/m",
      headers: json,
      payload: '{"inputs":"x"}',
    });
    assert.equal(res.statusCode, 503);
    assert.equal(JSON.parse(res.body).message, "All model workers has been shutdown: m");
  });

  it("a client that disconnects mid-stream aborts its generation and frees its queue slot", async () => {
    const engine = new ScriptedEngine({ words: Array.from({ length: 50 }, (_, i) => ` w${i}`), delayMs: 20 });
    const { app, registry } = harness(async () => scriptedModel(engine));
    await addModel(registry, "m");
    await app.listen({ port: 0, host: "127.0.0.1" });
    try {
      const port = (app.server.address() as AddressInfo).port;
      await new Promise<void>((resolve, reject) => {
        const req = request(
          { port, host: "127.0.0.1", method: "POST", path: "/invocations", headers: json },
          (res) => {
            res.once("data", () => {
              req.destroy();
              resolve();
            });
          },
        );
        req.on("error", () => {});
        req.end(JSON.stringify({ inputs: "x", stream: true, parameters: { max_new_tokens: 50 } }));
        setTimeout(() => reject(new Error("no data")), 3000);
      });
      const deadline = Date.now() + 2000;
      while (engine.aborted === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      assert.equal(engine.aborted, 1);
      assert.equal(registry.get("m").inFlight, 0);
    } finally {
      app.server.closeAllConnections();
      await app.close();
    }
  });

  it("an engine that dies is restarted by the registry and counted in /ping", async () => {
    const { EngineDeadError } = await import("../../src/errors.ts");
    let loads = 0;
    const { app, registry } = harness(async () => {
      loads++;
      const e =
        loads === 1
          ? new ScriptedEngine({
              words,
              throwAfter: { count: 0, error: new EngineDeadError("executor thread exited") },
            })
          : new ScriptedEngine({ words });
      return scriptedModel(e);
    });
    await addModel(registry, "m");
    const res = await app.inject({
      method: "POST",
      url: "/invocations",
      headers: json,
      payload: '{"inputs":"x"}',
    });
    assert.equal(res.statusCode, 503);
    assert.match(JSON.parse(res.body).message, /executor thread exited/);
    await registry.get("m").restarting;
    assert.equal(loads, 2);
    const ping = await app.inject({ method: "GET", url: "/ping" });
    assert.equal(ping.statusCode, 500); // retry_threshold 0: the first crash marks FAILED, as DJL HEAD
    const ok = await app.inject({
      method: "POST",
      url: "/invocations",
      headers: json,
      payload: '{"inputs":"x"}',
    });
    assert.equal(ok.statusCode, 200);
  });
});

describe("chunked_read_timeout (spec §2.4)", () => {
  it("no output within the limit: the timeout status before headers, the error line after", async () => {
    const engine = new ScriptedEngine({ words: [" a", " b", " c"], delayMs: 150 });
    const { app, registry } = harness(async () => scriptedModel(engine), { chunkedReadTimeoutMs: 60 });
    await addModel(registry, "m");
    const plain = await app.inject({
      method: "POST",
      url: "/invocations",
      headers: json,
      payload: '{"inputs":"x"}',
    });
    assert.equal(plain.statusCode, 400);
    assert.equal(JSON.parse(plain.body).type, "TimeoutException");
    assert.match(JSON.parse(plain.body).message, /Read chunk timeout/);
    assert.equal(registry.get("m").inFlight, 0);
    // Between chunks: a fast first token, then a stall past the limit.
    const slow = new ScriptedEngine({ words: [" a", " b", " c"], delayMs: 0 });
    const h2 = harness(async () => scriptedModel(slow), { chunkedReadTimeoutMs: 100 });
    await addModel(h2.registry, "m");
    const orig = slow.generate.bind(slow);
    slow.generate = async function* (req, signal) {
      let i = 0;
      for await (const o of orig(req, signal)) {
        if (i++ === 1) await new Promise((r) => setTimeout(r, 300));
        yield o;
      }
    };
    const res = await h2.app.inject({
      method: "POST",
      url: "/invocations",
      headers: json,
      payload: '{"inputs":"x","stream":true}',
    });
    assert.equal(res.statusCode, 200);
    const lines = res.body
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l));
    assert.match(lines.at(-1).token.error_msg, /Read chunk timeout/);
    assert.equal(lines.at(-1).details.finish_reason, "error");
  });
});
