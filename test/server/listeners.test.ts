import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ModelRegistry } from "../../src/registry/registry.ts";
import { Logger } from "../../src/server/log.ts";
import { ServerMetrics } from "../../src/server/metrics.ts";
import { parseAddress, startServer } from "../../src/server/start.ts";
import { addModel, ScriptedEngine, scriptedModel } from "./scripted-engine.ts";

function parts() {
  const lines: string[] = [];
  const logger = new Logger({ sink: { write: (l) => lines.push(l) } });
  const registry = new ModelRegistry({
    loader: async () => scriptedModel(new ScriptedEngine({ words: [" a"] })),
    logger,
  });
  const metrics = new ServerMetrics({ version: "t", modelRegistry: () => registry });
  const http = {
    maxRequestSize: 1 << 20,
    requestIdHeader: "x-request-id",
    allowMultiStatus: false,
    prometheus: false,
    chunkedReadTimeoutMs: 10_000,
    timeoutHttpCode: 400,
  };
  return { lines, logger, registry, metrics, http };
}

describe("listeners (spec §2.1)", () => {
  it("parses addresses and rejects what it cannot serve, naming the key", () => {
    assert.deepEqual(parseAddress("http://127.0.0.1:8080", "inference_address"), {
      host: "127.0.0.1",
      port: 8080,
    });
    assert.deepEqual(parseAddress("http://[::1]:9", "x"), { host: "::1", port: 9 });
    assert.throws(
      () => parseAddress("https://0.0.0.0:8443", "management_address"),
      /management_address: https/,
    );
    assert.throws(() => parseAddress("nonsense", "inference_address"), /inference_address/);
  });

  it("one listener for both APIs when the addresses are equal", async () => {
    const p = parts();
    await addModel(p.registry, "m");
    const s = await startServer({
      ...p,
      inferenceAddress: "http://127.0.0.1:0",
      managementAddress: "http://127.0.0.1:0",
      port: 0,
    });
    try {
      assert.equal(s.urls.length, 1);
      assert.ok(p.lines.some((l) => l.includes("BOTH API bind to: http://127.0.0.1:")));
      assert.equal((await fetch(`${s.urls[0]}/ping`)).status, 200);
      assert.equal((await fetch(`${s.urls[0]}/models`)).status, 200);
    } finally {
      await s.close();
    }
  });

  it("separate inference and management listeners when the addresses differ", async () => {
    const p = parts();
    await addModel(p.registry, "m");
    const s = await startServer({
      ...p,
      inferenceAddress: "http://127.0.0.1:0",
      managementAddress: "http://localhost:0",
    });
    try {
      assert.equal(s.urls.length, 2);
      const [inf, mgmt] = s.urls;
      assert.equal((await fetch(`${inf}/ping`)).status, 200);
      assert.equal((await fetch(`${inf}/models`)).status, 404);
      assert.equal((await fetch(`${mgmt}/models`)).status, 200);
      assert.equal((await fetch(`${mgmt}/ping`)).status, 404);
      const r = await fetch(`${inf}/predictions/m`, {
        method: "POST",
        body: '{"inputs":"x"}',
        headers: { "content-type": "application/json" },
      });
      assert.deepEqual(await r.json(), { generated_text: " a" });
    } finally {
      await s.close();
    }
  });

  it("JSON log format: one object per line with the request id", async () => {
    const lines: string[] = [];
    const logger = new Logger({ json: true, sink: { write: (l) => lines.push(l) } });
    logger.info("hello", { requestId: "r-1", status: 200 });
    logger.debug("hidden");
    const o = JSON.parse(lines[0]);
    assert.equal(lines.length, 1);
    assert.equal(o.msg, "hello");
    assert.equal(o.requestId, "r-1");
    assert.equal(o.level, "info");
  });
});
