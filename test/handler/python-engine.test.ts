// End-to-end tests of the Python handler path with real worker processes and standard-library
// handlers (test/fixtures/handlers), the cases of DJL's PyEngineTest: echo, batch echo, stream echo,
// 424 on a handler exception, restart after exit, loading and predict timeouts, fallback, startup errors.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import {
  createHandlerModel,
  type HandlerModelOptions,
  type PythonHandlerModel,
} from "../../src/handler/handler-model.ts";
import type { DjlInput, DjlOutput } from "../../src/handler/protocol.ts";

const fixtures = fileURLToPath(new URL("../fixtures/handlers/", import.meta.url));

function model(
  dir: string,
  over: Partial<HandlerModelOptions> = {},
  logs: string[] = [],
): PythonHandlerModel {
  return createHandlerModel({
    modelName: `t-${dir}`,
    modelDir: fixtures + dir,
    options: {
      minWorkers: 1,
      maxWorkers: 1,
      batchSize: 1,
      maxBatchDelayMs: 100,
      modelLoadingTimeoutS: 20,
      predictTimeoutS: 20,
      startupTimeoutS: 20,
      properties: { model_id: "echo-id" },
      log: (_level, line) => logs.push(line),
      ...over,
    },
  });
}

function req(text: string, props: Record<string, string> = {}): DjlInput {
  return {
    properties: { "content-type": "text/plain", ...props },
    content: [{ key: "data", value: Buffer.from(text) }],
  };
}

function text(out: DjlOutput): string {
  return Buffer.concat(out.content.map((c) => Buffer.from(c.value))).toString("utf8");
}

async function withModel(m: PythonHandlerModel, fn: (m: PythonHandlerModel) => Promise<void>): Promise<void> {
  try {
    await m.start();
    await fn(m);
  } finally {
    await m.shutdown();
  }
}

describe("python handler workers", { concurrency: true }, () => {
  test("echo: init sees the options, the request is echoed", () =>
    withModel(model("echo"), async (m) => {
      assert.equal(m.status(), "READY");
      const out = await m.invoke(req("hello"));
      assert.equal(out.code, 200);
      assert.equal(text(out), "hello");
      assert.equal(out.properties["x-model-id"], "echo-id");
      assert.equal(out.properties["content-type"], "text/plain");
    }));

  test("batch echo: concurrent requests travel as one batch and come back split", () =>
    withModel(model("echo", { batchSize: 4, maxBatchDelayMs: 300 }), async (m) => {
      const outs = await Promise.all(["a", "bb", "ccc"].map((t) => m.invoke(req(t))));
      assert.deepEqual(outs.map(text), ["a", "bb", "ccc"]);
      assert.deepEqual(
        outs.map((o) => o.properties["x-batch-size"]),
        ["3", "3", "3"],
      );
    }));

  test("stream echo: generator items arrive as chunks, in order", () =>
    withModel(model("echo"), async (m) => {
      const out = await m.invoke(req("x", { stream: "3" }));
      assert.ok(out.stream);
      const chunks: string[] = [];
      for await (const c of out.stream) chunks.push(Buffer.from(c).toString());
      assert.deepEqual(chunks, ['{"i":0,"t":"x"}\n', '{"i":1,"t":"x"}\n', '{"i":2,"t":"x"}\n']);
      assert.equal(text(await m.invoke(req("after"))), "after");
    }));

  test("a generator that raises ends the stream with its message", () =>
    withModel(model("echo"), async (m) => {
      const out = await m.invoke(req("x", { stream: "3", stream_fail: "1" }));
      const chunks: string[] = [];
      for await (const c of out.stream!) chunks.push(Buffer.from(c).toString());
      assert.deepEqual(chunks, ['{"i":0,"t":"x"}\n', "stream broke at 1"]);
    }));

  test("handler exception -> 424 with the message", () =>
    withModel(model("echo"), async (m) => {
      const out = await m.invoke(req("x", { exception: "bad input" }));
      assert.equal(out.code, 424);
      assert.deepEqual(JSON.parse(text(out)), {
        code: 424,
        message: "invoke handler failure",
        error: "model error: bad input",
      });
      assert.equal(m.failedCount(), 0);
    }));

  test("a worker that exits is restarted and the next request is served", () =>
    withModel(model("echo"), async (m) => {
      const first = await m.invoke(req("one"));
      await assert.rejects(m.invoke(req("x", { exit: "1" })), (e: Error & { status?: number }) => {
        assert.match(e.message, /Backend Python process is stopped. The worker exited \(exit code 3\)/);
        assert.equal(e.status, 400);
        return true;
      });
      const next = await m.invoke(req("two"));
      assert.equal(text(next), "two");
      assert.notEqual(next.properties["x-pid"], first.properties["x-pid"]);
      assert.equal(m.failedCount(), 1);
      assert.equal(m.status(), "FAILED", "retry_threshold 0: one crash marks the model FAILED for /ping");
    }));

  test("model loading timeout fails start with a clear error", async () => {
    const m = model("echo", { modelLoadingTimeoutS: 0.5, properties: { init_sleep: "5" } });
    await assert.rejects(m.start(), /model loading timed out: t-echo did not load within 0.5 s/);
    assert.equal(m.status(), "FAILED");
  });

  test("predict timeout fails the request, and a restarted worker serves the next", () =>
    withModel(model("echo", { predictTimeoutS: 1.5 }), async (m) => {
      await assert.rejects(m.invoke(req("x", { sleep: "6" })), /prediction timed out after 1.5 s/);
      assert.equal(text(await m.invoke(req("again"))), "again");
      assert.equal(m.failedCount(), 1);
    }));

  test("a model.py without handle falls back to the recommended entry point", () =>
    withModel(model("no_handle", { recommendedEntryPoint: `${fixtures}echo/model.py` }), async (m) => {
      assert.equal(text(await m.invoke(req("fallback"))), "fallback");
    }));

  test("an old-style handler (bare `from outputs import Output`, sys.exit) runs unchanged", () =>
    withModel(model("legacy_imports"), async (m) => {
      assert.deepEqual(JSON.parse(text(await m.invoke(req("abc")))), { total: 3 });
      await assert.rejects(
        m.invoke({ properties: {}, content: [{ key: "exit", value: Buffer.from("1") }] }),
        /The worker exited \(exit code 0\)/,
      );
      assert.deepEqual(
        JSON.parse(text(await m.invoke(req("de")))),
        { total: 2 },
        "a fresh worker starts from 0",
      );
    }));

  test("a syntax error in model.py is a clear startup failure", async () => {
    const m = model("syntax_error");
    await assert.rejects(m.start(), (e: Error) => {
      assert.match(e.message, /Failed to load model t-syntax_error/);
      assert.match(e.message, /syntax error in .*syntax_error\/model\.py, line 4/);
      return true;
    });
    assert.equal(m.status(), "FAILED");
  });

  test("out of memory while loading -> 507", async () => {
    await assert.rejects(model("oom_load").start(), (e: Error & { status?: number }) => {
      assert.equal(e.status, 507);
      assert.match(e.message, /80 GiB/);
      return true;
    });
  });

  test("a request may not override the handler", () =>
    withModel(model("echo"), async (m) => {
      await assert.rejects(
        m.invoke(req("x", { Handler: "other" })),
        /The handler can't be overridden in a request/,
      );
    }));

  test("option.env, load_on_devices and PYTHONPATH reach the worker", () =>
    withModel(model("echo", { env: "MY_FLAG=on,OTHER=a=b", loadOnDevices: "gpu2;gpu3" }), async (m) => {
      assert.equal(text(await m.invoke(req("", { getenv: "MY_FLAG" }))), "on");
      assert.equal(text(await m.invoke(req("", { getenv: "OTHER" }))), "a=b");
      assert.equal(text(await m.invoke(req("", { getenv: "CUDA_VISIBLE_DEVICES" }))), "2");
    }));

  test("maxWorkers 2: a second worker starts under load and serves in parallel", () =>
    withModel(model("echo", { maxWorkers: 2 }), async (m) => {
      // The second request finds the only worker busy: a second worker starts, and loads well
      // within the first request's 3 s, so it serves the second request.
      const pending = [m.invoke(req("a", { sleep: "3" })), m.invoke(req("b", { sleep: "3" }))];
      assert.equal(m.describeWorkers().length, 2);
      const outs = await Promise.all(pending);
      assert.deepEqual(outs.map(text), ["a", "b"]);
      assert.notEqual(outs[0].properties["x-pid"], outs[1].properties["x-pid"]);
      await m.scale(0, 0);
      await assert.rejects(m.invoke(req("z")), /All model workers has been shutdown: t-echo/);
    }));

  test("mpi_mode: every rank starts on its own socket and rank 0 answers", () => {
    const logs: string[] = [];
    const m = model(
      "echo",
      { mpiMode: true, tensorParallelDegree: 2, mpirun: `${fixtures}fake-mpirun.sh`, loadOnDevices: "0;1" },
      logs,
    );
    return withModel(m, async () => {
      const out = await m.invoke(req("ranked"));
      assert.equal(text(out), "ranked");
      assert.equal(out.properties["x-rank"], "0");
      assert.equal(text(await m.invoke(req("", { getenv: "CUDA_VISIBLE_DEVICES" }))), "0,1");
      assert.ok(logs.some((l) => l.includes("[1,1]<stdout>:Python engine started.")));
    });
  });
});
