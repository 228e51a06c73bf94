// Worker lifecycle edge cases with real processes: requirements.txt install, a Python that cannot be
// started or exits before its startup line, a stream that stalls past predict_timeout, bad options.

import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { createHandlerModel, type HandlerModelOptions } from "../../src/handler/handler-model.ts";
import type { DjlInput } from "../../src/handler/protocol.ts";

const fixtures = fileURLToPath(new URL("../fixtures/handlers/", import.meta.url));

function options(over: Partial<HandlerModelOptions> = {}): HandlerModelOptions {
  return {
    minWorkers: 1,
    maxWorkers: 1,
    batchSize: 1,
    maxBatchDelayMs: 10,
    modelLoadingTimeoutS: 60,
    predictTimeoutS: 20,
    startupTimeoutS: 20,
    properties: {},
    log: () => {},
    ...over,
  };
}

function model(dir: string, over: Partial<HandlerModelOptions> = {}) {
  return createHandlerModel({ modelName: dir, modelDir: fixtures + dir, options: options(over) });
}

const req = (props: Record<string, string> = {}): DjlInput => ({
  properties: { "content-type": "text/plain", ...props },
  content: [{ key: "data", value: Buffer.from("s") }],
});

describe("worker lifecycle", { concurrency: true }, () => {
  test("requirements.txt is installed with pip before the workers start", async () => {
    const m = model("requirements_ok");
    try {
      await m.start();
      const out = await m.invoke(req());
      assert.equal(Buffer.from(out.content[0].value).toString(), "installed");
    } finally {
      await m.shutdown();
    }
  });

  test("a requirements.txt that pip cannot install fails the load with pip's message", async () => {
    const m = model("requirements_bad");
    await assert.rejects(
      m.start(),
      /installing .*requirements\.txt failed \(pip exit code \d+\):[\s\S]*no-such-pkg/,
    );
    assert.equal(m.status(), "FAILED");
  });

  test("a Python executable that does not exist is a clear load failure", async () => {
    await assert.rejects(
      model("echo", { pythonExecutable: "/nonexistent/python3" }).start(),
      /cannot start the Python worker '\/nonexistent\/python3'/,
    );
  });

  test("a worker that exits before its startup line: Python stream closed unexpectedly", async () => {
    await assert.rejects(
      model("echo", { pythonExecutable: "false" }).start(),
      /Python stream closed unexpectedly: .* exited \(exit code 1\) before it started/,
    );
  });

  test("a worker that dies while loading: its exit status and last output are in the error", async () => {
    await assert.rejects(
      model("echo", { properties: { init_exit: "1" } }).start(),
      /died while loading the model \(exit code 4\):[\s\S]*loading failed badly/,
    );
  });

  test("a stream that stalls longer than predict_timeout is cut and the worker restarted", async () => {
    const m = model("echo", { predictTimeoutS: 1.5 });
    try {
      await m.start();
      const out = await m.invoke(req({ stream: "3", stream_sleep: "6" }));
      const seen: string[] = [];
      await assert.rejects(async () => {
        for await (const c of out.stream!) seen.push(Buffer.from(c).toString());
      }, /no stream chunk within 1.5 s/);
      assert.deepEqual(seen, ['{"i":0,"t":"s"}\n']);
      const next = await m.invoke(req());
      assert.equal(Buffer.from(next.content[0].value).toString(), "s");
      assert.equal(m.failedCount(), 1);
    } finally {
      await m.shutdown();
    }
  });

  test("a worker above minWorkers retires after max_idle_time", async () => {
    const m = model("echo", { maxWorkers: 2, maxIdleS: 0.5 });
    try {
      await m.start();
      const pending = [m.invoke(req({ sleep: "1" })), m.invoke(req({ sleep: "1" }))];
      assert.equal(m.workers().length, 2, "a second worker starts while both requests wait");
      await Promise.all(pending);
      const deadline = Date.now() + 15_000;
      while (m.workers().length > 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      assert.equal(m.workers().length, 1);
      assert.equal(m.status(), "READY");
      assert.equal(Buffer.from((await m.invoke(req())).content[0].value).toString(), "s");
    } finally {
      await m.shutdown();
    }
  });

  test("minWorkers 0: idle workers all retire and a request starts one again", async () => {
    const m = model("echo", { minWorkers: 0, maxWorkers: 1, maxIdleS: 0.3 });
    try {
      await m.start();
      const deadline = Date.now() + 15_000;
      while (m.workers().length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      assert.equal(m.workers().length, 0);
      assert.equal(m.status(), "READY");
      const out = await m.invoke(req());
      assert.equal(Buffer.from(out.content[0].value).toString(), "s");
    } finally {
      await m.shutdown();
    }
  });

  test("an http(s) entry point is downloaded into the cache and served", async () => {
    const source = readFileSync(`${fixtures}echo/model.py`);
    const server = createServer((rq, rs) => {
      if (rq.url === "/handlers/model.py") rs.end(source);
      else rs.writeHead(404).end();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const cacheDir = mkdtempSync(join(tmpdir(), "ep-cache-"));
    const emptyModelDir = mkdtempSync(join(tmpdir(), "ep-model-"));
    const make = (url: string) =>
      createHandlerModel({
        modelName: "remote",
        modelDir: emptyModelDir,
        options: options({ entryPoint: url, cacheDir }),
      });
    try {
      const m = make(`${base}/handlers/model.py`);
      try {
        await m.start();
        const out = await m.invoke(req());
        assert.equal(Buffer.from(out.content[0].value).toString(), "s");
      } finally {
        await m.shutdown();
      }
      await assert.rejects(
        make(`${base}/missing.py`).start(),
        /cannot download option.entryPoint .*missing.py: HTTP 404/,
      );
    } finally {
      server.close();
    }
  });

  test("bad options fail at creation, naming every problem", () => {
    assert.throws(
      () =>
        model("echo", {
          minWorkers: 2,
          maxWorkers: 1,
          batchSize: 0,
          predictTimeoutS: -1,
          properties: { enable_streaming: "true" },
        }),
      (e: Error & { problems?: string[] }) => {
        assert.ok(e.problems?.some((p) => p.includes("maxWorkers (1) must be >= minWorkers (2)")));
        assert.ok(e.problems?.some((p) => p.includes("batch_size must be a positive number")));
        assert.ok(e.problems?.some((p) => p.includes("option.predict_timeout")));
        return true;
      },
    );
    assert.throws(
      () => model("echo", { batchSize: 4, properties: { enable_streaming: "true" } }),
      /We cannot enable streaming for dynamic batching/,
    );
  });
});
