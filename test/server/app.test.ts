import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { harness } from "./harness.ts";
import { addModel, ScriptedEngine, scriptedModel } from "./scripted-engine.ts";

const words = [" In", " the", " beginning"];

describe("app basics", () => {
  it("GET /ping with no models answers {} pretty-printed, with request id and no-cache headers", async () => {
    const { app } = harness(async () => scriptedModel(new ScriptedEngine({ words })));
    const res = await app.inject({ method: "GET", url: "/ping", headers: { "x-request-id": "abc-1" } });
    assert.equal(res.statusCode, 200);
    assert.equal(res.body, "{}\n");
    assert.equal(res.headers["x-request-id"], "abc-1");
    assert.equal(res.headers.pragma, "no-cache");
    assert.equal(res.headers["cache-control"], "no-cache; no-store, must-revalidate, private");
    assert.equal(res.headers.expires, "Thu, 01 Jan 1970 00:00:00 UTC");
    assert.match(String(res.headers["content-type"]), /^application\/json/);
  });

  it("generates a request id when the client sends none", async () => {
    const { app } = harness(async () => scriptedModel(new ScriptedEngine({ words })));
    const a = await app.inject({ method: "GET", url: "/ping" });
    const b = await app.inject({ method: "GET", url: "/ping" });
    assert.match(String(a.headers["x-request-id"]), /^[0-9a-f-]{36}$/);
    assert.notEqual(a.headers["x-request-id"], b.headers["x-request-id"]);
  });

  it("GET /ping reports Healthy per model, 500 when one FAILED, 503 when one has no worker", async () => {
    const { app, registry } = harness(async (spec) => {
      if (spec.name === "bad") throw new Error("no weights");
      return scriptedModel(new ScriptedEngine({ words }));
    });
    await addModel(registry, "good");
    let res = await app.inject({ method: "GET", url: "/ping" });
    assert.equal(res.statusCode, 200);
    assert.equal(res.body, '{\n  "good": {\n    "status": "Healthy"\n  }\n}\n');
    await registry.scale(registry.get("good"), 0, 0);
    res = await app.inject({ method: "GET", url: "/ping" });
    assert.equal(res.statusCode, 503);
    assert.deepEqual(JSON.parse(res.body), { good: { status: "Unhealthy" } });
    await assert.rejects(registry.register({ name: "bad", url: "/x", overrides: {} }).ready, /no weights/);
    res = await app.inject({ method: "GET", url: "/ping" });
    assert.equal(res.statusCode, 500);
    assert.deepEqual(JSON.parse(res.body).bad, { status: "FAILED" });
  });

  it("reports PENDING while loading (200, or 207 with allow_multi_status)", async () => {
    let finish: () => void = () => {};
    const gate = new Promise<void>((r) => {
      finish = r;
    });
    const loader = async () => {
      await gate;
      return scriptedModel(new ScriptedEngine({ words }));
    };
    const plain = harness(loader);
    plain.registry.register({ name: "m", url: "/m", overrides: {} });
    const res = await plain.app.inject({ method: "GET", url: "/ping" });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(JSON.parse(res.body), { m: { status: "PENDING" } });
    const multi = harness(loader, { allowMultiStatus: true });
    multi.registry.register({ name: "m", url: "/m", overrides: {} });
    assert.equal((await multi.app.inject({ method: "GET", url: "/ping" })).statusCode, 207);
    finish();
  });

  it("unknown path -> 404 and wrong method -> 405 with DJL's messages and Connection: close", async () => {
    const { app } = harness(async () => scriptedModel(new ScriptedEngine({ words })));
    const nf = await app.inject({ method: "GET", url: "/nope" });
    assert.equal(nf.statusCode, 404);
    assert.deepEqual(JSON.parse(nf.body), {
      code: 404,
      type: "ResourceNotFoundException",
      message: "Requested resource is not found, please refer to API document.",
    });
    assert.equal(nf.headers.connection, "close");
    const na = await app.inject({ method: "DELETE", url: "/invocations" });
    assert.equal(na.statusCode, 405);
    assert.deepEqual(JSON.parse(na.body), {
      code: 405,
      type: "MethodNotAllowedException",
      message: "Requested method is not allowed, please refer to API document.",
    });
    const metricsPost = await app.inject({ method: "POST", url: "/server/metrics" });
    assert.equal(metricsPost.statusCode, 405);
  });

  it("OPTIONS / and OPTIONS on inference paths answer {}", async () => {
    const { app } = harness(async () => scriptedModel(new ScriptedEngine({ words })));
    for (const url of ["/", "/invocations", "/predictions/x", "/ping"]) {
      const res = await app.inject({ method: "OPTIONS", url });
      assert.equal(res.statusCode, 200, url);
      assert.equal(res.body, "{}\n", url);
    }
  });

  it("a body over max_request_size -> 413", async () => {
    const { app, registry } = harness(async () => scriptedModel(new ScriptedEngine({ words })), {
      maxRequestSize: 1024,
    });
    await addModel(registry, "m");
    const res = await app.inject({
      method: "POST",
      url: "/invocations",
      headers: { "content-type": "application/json" },
      payload: JSON.stringify({ inputs: "x".repeat(2000) }),
    });
    assert.equal(res.statusCode, 413);
    const body = JSON.parse(res.body);
    assert.equal(body.code, 413);
    assert.match(body.message, /max_request_size/);
    // The server still serves after rejecting it.
    const ok = await app.inject({ method: "POST", url: "/invocations", payload: { inputs: "hi" } });
    assert.equal(ok.statusCode, 200);
  });

  it("writes one access-log line per request with the request id", async () => {
    const { app, logLines } = harness(async () => scriptedModel(new ScriptedEngine({ words })));
    await app.inject({ method: "GET", url: "/ping", headers: { "x-request-id": "rid-42" } });
    const line = logLines.find((l) => l.includes('"GET /ping" 200'));
    assert.ok(line, logLines.join(""));
    assert.match(line, /RequestId=\[rid-42\]/);
  });
});
