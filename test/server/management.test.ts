import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ModelNotFoundError } from "../../src/errors.ts";
import { harness } from "./harness.ts";
import { ScriptedEngine, scriptedModel } from "./scripted-engine.ts";

const words = [" In", " the"];

function setup() {
  return harness(
    async (spec) => {
      if (spec.url.includes("missing")) throw new ModelNotFoundError(spec.url);
      return scriptedModel(new ScriptedEngine({ words }));
    },
    { prometheus: true },
  );
}

describe("management API (spec §2.5)", () => {
  it("register sync (200) and async (202), duplicate 409, missing url 400, bad url 404", async () => {
    const { app, registry } = setup();
    let res = await app.inject({ method: "POST", url: "/models?url=/m/llama-tiny&model_name=m1" });
    assert.equal(res.statusCode, 200);
    assert.equal(res.body, '{\n  "status": "Model \\"m1\\" registered."\n}\n');
    res = await app.inject({ method: "POST", url: "/models?url=/m/x&model_name=m1" });
    assert.equal(res.statusCode, 409);
    assert.equal(JSON.parse(res.body).message, "Workflow m1 is already registered.");
    res = await app.inject({
      method: "POST",
      url: "/models",
      headers: { "content-type": "application/json" },
      payload: { url: "/m/llama-2", synchronous: false },
    });
    assert.equal(res.statusCode, 202);
    assert.deepEqual(JSON.parse(res.body), { status: 'Model "llama_2" registration scheduled.' });
    while (registry.get("llama_2").status === "PENDING") await new Promise((r) => setTimeout(r, 5));
    assert.equal(registry.get("llama_2").status, "READY");
    res = await app.inject({ method: "POST", url: "/models" });
    assert.equal(res.statusCode, 400);
    assert.equal(JSON.parse(res.body).message, "Parameter url is required.");
    res = await app.inject({ method: "POST", url: "/models?url=/missing/model" });
    assert.equal(res.statusCode, 404);
    assert.equal(registry.has("model"), false);
    res = await app.inject({ method: "POST", url: "/models?url=/m/z&min_worker=abc" });
    assert.equal(res.statusCode, 400);
    assert.match(JSON.parse(res.body).message, /min_worker/);
  });

  it("list with pagination, sorted", async () => {
    const { app } = setup();
    for (const n of ["c", "a", "b"]) await app.inject({ method: "POST", url: `/models?url=/m/${n}` });
    let body = JSON.parse((await app.inject({ method: "GET", url: "/models?limit=2" })).body);
    assert.deepEqual(
      body.models.map((m: { modelName: string }) => m.modelName),
      ["a", "b"],
    );
    assert.equal(body.nextPageToken, "2");
    assert.deepEqual(body.models[0], { modelName: "a", modelUrl: "/m/a", status: "READY" });
    body = JSON.parse((await app.inject({ method: "GET", url: "/models?limit=2&next_page_token=2" })).body);
    assert.deepEqual(
      body.models.map((m: { modelName: string }) => m.modelName),
      ["c"],
    );
    assert.equal(body.nextPageToken, undefined);
  });

  it("describe, scale, unregister", async () => {
    const { app } = setup();
    await app.inject({ method: "POST", url: "/models?url=/m/tiny&job_queue_size=7" });
    const d = JSON.parse((await app.inject({ method: "GET", url: "/models/tiny" })).body);
    assert.equal(d[0].workflowName, "tiny");
    const m = d[0].models[0];
    assert.equal(m.modelName, "tiny");
    assert.equal(m.queueSize, 7);
    assert.equal(m.status, "READY");
    assert.equal(m.workerGroups.length, 1);
    assert.equal(m.workerGroups[0].workers.length, 1);
    let res = await app.inject({ method: "PUT", url: "/models/tiny?min_worker=0&max_worker=0" });
    assert.equal(res.statusCode, 200);
    assert.equal(
      JSON.parse(res.body).status,
      'Workflow "tiny" worker scaled. New Worker configuration min workers:0 max workers:0',
    );
    res = await app.inject({ method: "POST", url: "/predictions/tiny", payload: { inputs: "x" } });
    assert.equal(res.statusCode, 503);
    res = await app.inject({ method: "PUT", url: "/models/fake?min_worker=1" });
    assert.equal(res.statusCode, 404);
    assert.equal(JSON.parse(res.body).message, "Model or workflow not found: fake");
    res = await app.inject({ method: "PUT", url: "/models/tiny?max_worker=x" });
    assert.equal(res.statusCode, 400);
    res = await app.inject({ method: "DELETE", url: "/models/tiny" });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(JSON.parse(res.body), { status: 'Model or workflow "tiny" unregistered' });
    res = await app.inject({ method: "DELETE", url: "/models/tiny" });
    assert.equal(res.statusCode, 404);
  });

  it("POST /server/logging changes the level; a bad level is 400", async () => {
    const { app, ctx } = setup();
    let res = await app.inject({ method: "POST", url: "/server/logging?level=debug" });
    assert.deepEqual(JSON.parse(res.body), { status: "OK" });
    assert.equal(ctx.logger.level, "debug");
    res = await app.inject({ method: "POST", url: "/server/logging?level=loud" });
    assert.equal(res.statusCode, 400);
    assert.equal(ctx.logger.level, "debug");
  });

  it("GET /server/metrics: Prometheus text with DJL and LLM metrics; filter by name[]; off -> 400", async () => {
    const { app } = setup();
    await app.inject({ method: "POST", url: "/models?url=/m/tiny" });
    await app.inject({ method: "POST", url: "/predictions/tiny", payload: { inputs: "x", stream: true } });
    await app.inject({ method: "GET", url: "/nope" });
    const res = await app.inject({ method: "GET", url: "/server/metrics" });
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers["content-type"]), /^text\/plain; version=0\.0\.4/);
    assert.match(res.body, /DJLServingStart_total\{Version="test"\} 1/);
    assert.match(res.body, /# HELP Response_2XX_total : prometheus counter metric, unit: Count/);
    assert.match(res.body, /Response_4XX_total 1/);
    assert.match(res.body, /lmi_generation_tokens_total\{model="tiny"\} 2/);
    assert.match(res.body, /lmi_time_to_first_token_seconds_count\{model="tiny"\} 1/);
    assert.match(res.body, /lmi_inter_token_latency_seconds_count\{model="tiny"\} 1/);
    assert.match(res.body, /lmi_kv_cache_usage_ratio\{model="tiny"\} 0.25/);
    assert.match(res.body, /lmi_num_requests_running\{model="tiny"\} 0/);
    assert.match(res.body, /# HELP RequestLatency : prometheus gauge metric, unit: Microseconds/);
    assert.match(res.body, /RequestLatency\{Model="tiny"\} \d+/);
    assert.match(res.body, /LoadModel\{Model="tiny"\} \d+/);
    const one = await app.inject({ method: "GET", url: "/server/metrics?name[]=Response_4XX_total" });
    assert.match(one.body, /Response_4XX_total/);
    assert.doesNotMatch(one.body, /DJLServingStart/);
    const off = harness(async () => scriptedModel(new ScriptedEngine({ words })), { prometheus: false });
    assert.equal((await off.app.inject({ method: "GET", url: "/server/metrics" })).statusCode, 400);
  });
});
