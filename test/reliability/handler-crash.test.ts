// The Python handler worker SIGKILLed in the middle of a streamed reply, repeatedly, over HTTP with
// the real worker pool (test/fixtures/handlers/echo). Each round: the cut stream ends at once and
// visibly (no final chunk, so the client sees an incomplete response, never a clean short one), a
// request queued behind it is either served by the restarted worker or answered 400 "Backend Python
// process is stopped" (spec §5.8), the pool restarts the worker, and a new request succeeds.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { PythonHandlerModel } from "../../src/handler/handler-model.ts";
import { ROOT } from "../e2e/serve-process.ts";
import { realHarness } from "../server/real-model-harness.ts";
import { getJson, post, quantiles, recordFigures, rounds, waitFor } from "./helpers.ts";

const ECHO = join(ROOT, "test", "fixtures", "handlers", "echo");
const STREAM = { "content-type": "text/plain", stream: "40", stream_sleep: "0.05" };

async function serveEcho(env: Record<string, string>) {
  const h = realHarness(env);
  const reg = await h.app.inject({
    method: "POST",
    url: `/models?url=${encodeURIComponent(ECHO)}&model_name=echo`,
  });
  assert.equal(reg.statusCode, 200, reg.body);
  await h.app.listen({ host: "127.0.0.1", port: 0 });
  const url = `http://127.0.0.1:${(h.app.server.address() as { port: number }).port}`;
  const pool = () => {
    const b = h.registry.get("echo").backend;
    assert.ok(b?.kind === "handler");
    return b.handler as unknown as PythonHandlerModel;
  };
  return {
    h,
    url,
    pool,
    async close() {
      h.app.server.closeAllConnections();
      await h.app.close();
      await h.registry.closeAll();
    },
  };
}

describe("Python handler worker killed mid-stream, repeatedly", () => {
  let s: Awaited<ReturnType<typeof serveEcho>>;
  before(async () => {
    s = await serveEcho({ SERVING_RETRY_THRESHOLD: "1000" });
  });
  after(() => s.close());

  it("the cut stream ends visibly, the queued request is served or refused per spec, the worker restarts", async () => {
    const n = rounds(2, 10);
    const recoveryMs: number[] = [];
    const cutAfterMs: number[] = [];
    const queuedOutcomes: Record<string, number> = {};
    for (let round = 0; round < n; round++) {
      const stream = post(s.url, "/predictions/echo", `r${round}`, STREAM);
      await stream.firstChunk;
      const queued = post(s.url, "/predictions/echo", `queued ${round}`, { "content-type": "text/plain" });
      const pid = s.pool().describeWorkers()[0].pid;
      assert.ok(pid, "the worker has a pid");
      const tKill = performance.now();
      process.kill(pid, "SIGKILL");

      const r = await stream.done;
      cutAfterMs.push(performance.now() - tKill);
      assert.equal(r.status, 200);
      assert.equal(r.complete, false, "a stream cut by a dead worker must not end like a complete one");
      assert.ok(r.body.split("\n").filter((l) => l !== "").length < 40);

      const q = await queued.done;
      const outcome = q.status === 200 ? "served after restart" : `${q.status} ${JSON.parse(q.body).message}`;
      queuedOutcomes[outcome.replace(/\(.*\)/, "(...)")] =
        (queuedOutcomes[outcome.replace(/\(.*\)/, "(...)")] ?? 0) + 1;
      if (q.status === 200) assert.equal(q.body, `queued ${round}`);
      else {
        assert.equal(q.status, 400, q.body);
        assert.match(JSON.parse(q.body).message, /^Backend Python process is stopped/);
      }

      await waitFor("a 200 after the kill", async () => {
        const ok = await post(s.url, "/predictions/echo", "after", { "content-type": "text/plain" }).done;
        return ok.status === 200 && ok.body === "after" ? true : undefined;
      });
      recoveryMs.push(performance.now() - tKill);
      assert.notEqual(s.pool().describeWorkers()[0].pid, pid, "a new worker process serves");
      const ping = await getJson(`${s.url}/ping`);
      assert.deepEqual([ping.status, ping.body], [200, { echo: { status: "Healthy" } }]);
    }
    assert.equal(s.pool().failedCount(), n, "each kill counted once");
    recordFigures("handler-crash", {
      promise: "Python handler worker killed mid-stream: the stream ends visibly, the worker restarts",
      faultsInjected: n,
      cutStreamEndAfterKillMs: quantiles(cutAfterMs),
      queuedRequestOutcomes: queuedOutcomes,
      recoveryMs: quantiles(recoveryMs),
    });
  });
});

describe("Python handler worker killed, DJL's default retry_threshold=0", () => {
  let s: Awaited<ReturnType<typeof serveEcho>>;
  before(async () => {
    s = await serveEcho({});
  });
  after(() => s.close());

  it("/ping reports 500 FAILED after the crash while the restarted worker serves", async () => {
    const pid = s.pool().describeWorkers()[0].pid!;
    process.kill(pid, "SIGKILL");
    await waitFor("a 200 after the kill", async () => {
      const ok = await post(s.url, "/predictions/echo", "after", { "content-type": "text/plain" }).done;
      return ok.status === 200 ? true : undefined;
    });
    const ping = await getJson(`${s.url}/ping`);
    assert.deepEqual([ping.status, ping.body], [500, { echo: { status: "FAILED" } }]);
  });
});
