// The Python handler path through HTTP, with the real loader and real djl_python workers running
// test fixtures (standard library only): dynamic batching (batch_size / max_batch_delay), a streamed
// handler output passed through chunk by chunk, a handler exception as 424, an OOM at load as 507,
// and describe/scale of the worker pool.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { ROOT } from "../e2e/serve-process.ts";
import { realHarness } from "./real-model-harness.ts";

const FIXTURES = join(ROOT, "test", "fixtures", "handlers");

describe("Python handler path over HTTP", () => {
  const h = realHarness();
  after(async () => {
    await h.registry.closeAll();
  });

  it("registers a model.py dir on the handler path (logged) and batches concurrent requests", async () => {
    const url = encodeURIComponent(join(FIXTURES, "echo"));
    const reg = await h.app.inject({
      method: "POST",
      url: `/models?url=${url}&model_name=echo&batch_size=2&max_batch_delay=500`,
    });
    assert.equal(reg.statusCode, 200, reg.body);
    assert.ok(
      h.logLines.some((l) => /model echo: Python handler \(the model directory has a model.py\)/.test(l)),
    );
    const send = (body: string) =>
      h.app.inject({
        method: "POST",
        url: "/predictions/echo",
        headers: { "content-type": "text/plain" },
        payload: body,
      });
    const [a, b] = await Promise.all([send("first"), send("second")]);
    assert.equal(a.statusCode, 200);
    assert.equal(a.body, "first");
    assert.equal(b.body, "second");
    assert.equal(a.headers["x-batch-size"], "2");
    assert.equal(b.headers["x-batch-size"], "2");
    assert.ok(a.headers["x-request-id"]);
  });

  it("passes a streamed handler output through as chunks", async () => {
    const res = await h.app.inject({
      method: "POST",
      url: "/invocations?model_name=echo",
      headers: { "content-type": "text/plain", stream: "3" },
      payload: "hi",
    });
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers["content-type"], "application/jsonlines");
    assert.equal(res.body, '{"i":0,"t":"hi"}\n{"i":1,"t":"hi"}\n{"i":2,"t":"hi"}\n');
  });

  it("option.handler in serving.properties picks the function the worker calls", async () => {
    const url = encodeURIComponent(join(FIXTURES, "custom_handler"));
    const reg = await h.app.inject({ method: "POST", url: `/models?url=${url}&model_name=custom` });
    assert.equal(reg.statusCode, 200, reg.body);
    const res = await h.app.inject({
      method: "POST",
      url: "/predictions/custom",
      headers: { "content-type": "text/plain" },
      payload: "amen",
    });
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(res.body, "shout:AMEN");
  });

  it("a handler exception is DJL's 424 body; the model keeps serving", async () => {
    const res = await h.app.inject({
      method: "POST",
      url: "/predictions/echo",
      headers: { "content-type": "text/plain", exception: "bad input" },
      payload: "x",
    });
    assert.equal(res.statusCode, 424);
    const body = JSON.parse(res.body);
    assert.equal(body.code, 424);
    assert.equal(body.message, "invoke handler failure");
    assert.match(body.error, /bad input/);
    const ok = await h.app.inject({
      method: "POST",
      url: "/predictions/echo",
      headers: { "content-type": "text/plain" },
      payload: "y",
    });
    assert.equal(ok.body, "y");
  });

  it("describe shows the worker pool; scale changes it", async () => {
    const d = JSON.parse((await h.app.inject({ method: "GET", url: "/models/echo" })).body);
    assert.equal(d[0].models[0].backend, "handler");
    assert.equal(d[0].models[0].batchSize, 2);
    assert.ok(d[0].models[0].workerGroups[0].workers.length >= 1);
    const s = await h.app.inject({ method: "PUT", url: "/models/echo?min_worker=1&max_worker=2" });
    assert.equal(s.statusCode, 200);
    const d2 = JSON.parse((await h.app.inject({ method: "GET", url: "/models/echo" })).body);
    assert.equal(d2[0].models[0].workerGroups[0].maxWorkers, 2);
  });

  it("an out-of-memory load answers 507 and leaves nothing registered", async () => {
    const url = encodeURIComponent(join(FIXTURES, "oom_load"));
    const res = await h.app.inject({ method: "POST", url: `/models?url=${url}&model_name=oom` });
    assert.equal(res.statusCode, 507);
    assert.equal(JSON.parse(res.body).code, 507);
    assert.equal(h.registry.has("oom"), false);
  });
});
