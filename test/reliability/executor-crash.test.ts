// CPU executor crashes under HTTP load, repeatedly: the worker_thread is terminated while streams run.
// Promises checked each round: every in-flight request ends promptly with the error (a final error
// line in the stream, 424 for a non-streaming one; never a hang or a silent cut), /ping reports the
// model as not healthy while it restarts, the registry restarts it, and new requests succeed.
// Recovery time (kill -> first 200) is recorded for docs/reliability.md.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  cpuExecutorOf,
  engineOf,
  getJson,
  type LiveServer,
  post,
  quantiles,
  recordFigures,
  rounds,
  startLiveServer,
  waitFor,
} from "./helpers.ts";

const LONG = { max_new_tokens: 400, ignore_eos: true, do_sample: true };
const PROMPT_END_MS = 5_000;

/** The last JSON line of an LMI jsonlines stream. */
function lastLine(body: string): Record<string, unknown> {
  const lines = body.split("\n").filter((l) => l !== "");
  return JSON.parse(lines.at(-1) ?? "{}");
}

describe("executor crash: worker_thread killed mid-stream, repeatedly", () => {
  let s: LiveServer;
  // A high retry threshold so /ping goes back to Healthy after each restart (DJL's default of 0
  // reports FAILED after the first crash; the next test checks that).
  before(async () => {
    s = await startLiveServer({ env: { SERVING_RETRY_THRESHOLD: "1000" } });
  });
  after(() => s.close());

  it("every in-flight stream ends with the error, /ping reports it, the model recovers", async () => {
    const n = rounds(3, 12);
    const recoveryMs: number[] = [];
    const endMs: number[] = [];
    const pingSeen = new Set<string>();
    let inFlightFailed = 0;
    for (let round = 0; round < n; round++) {
      const streams = [0, 1, 2].map((i) =>
        post(s.url, "/invocations", {
          inputs: `Round ${round} stream ${i}:`,
          parameters: LONG,
          stream: true,
        }),
      );
      const chat = post(s.url, "/v1/chat/completions", {
        messages: [{ role: "user", content: `round ${round}` }],
        max_tokens: 400,
        stream: true,
        ignore_eos: true,
      });
      const plain = post(s.url, "/invocations", { inputs: `Round ${round} plain`, parameters: LONG });
      await Promise.all([...streams, chat].map((x) => x.firstChunk));
      const engine = engineOf(s);
      const tKill = performance.now();
      await cpuExecutorOf(engine).worker.terminate();

      for (const [i, x] of streams.entries()) {
        const r = await x.done;
        endMs.push(performance.now() - tKill);
        assert.equal(r.status, 200, `stream ${i} started before the kill`);
        assert.ok(r.complete, `stream ${i} was cut without its terminator`);
        const last = lastLine(r.body) as {
          details?: { finish_reason: string };
          token?: { error_msg?: string };
        };
        assert.equal(last.details?.finish_reason, "error", `stream ${i} last line: ${JSON.stringify(last)}`);
        assert.match(String(last.token?.error_msg), /executor/i);
        inFlightFailed++;
      }
      const c = await chat.done;
      assert.ok(c.complete, "the chat stream was cut");
      assert.match(c.body, /"error"/, "the chat stream carries an error event");
      assert.match(c.body, /data: \[DONE\]\n\n$/, "the chat stream still closes with [DONE]");
      inFlightFailed++;
      const p = await plain.done;
      assert.equal(p.status, 424, p.body);
      assert.match(JSON.parse(p.body).error, /executor/i);
      inFlightFailed++;
      assert.ok(performance.now() - tKill < PROMPT_END_MS, "in-flight requests took too long to end");

      // Restarting: /ping must not say Healthy until the new engine is attached.
      const ping = await getJson(`${s.url}/ping`);
      pingSeen.add(`${ping.status} ${JSON.stringify(ping.body)}`);
      const healthyNow = s.h.registry.get("tiny").backend !== null && engineOf(s) !== engine;
      if (!healthyNow) assert.notEqual(ping.status, 200, `ping during restart: ${JSON.stringify(ping.body)}`);

      await waitFor("a 200 after the crash", async () => {
        const r = await post(s.url, "/invocations", { inputs: "After", parameters: { max_new_tokens: 2 } })
          .done;
        return r.status === 200 ? true : undefined;
      });
      recoveryMs.push(performance.now() - tKill);
      const back = await getJson(`${s.url}/ping`);
      assert.equal(back.status, 200);
      assert.deepEqual(back.body, { tiny: { status: "Healthy" } });
    }
    assert.equal(s.h.registry.get("tiny").failed, n, "each kill counted once as a crash");
    recordFigures("executor-crash", {
      promise:
        "CPU executor thread killed mid-stream: in-flight requests end with an error, the model restarts",
      faultsInjected: n,
      inFlightFailedWithError: inFlightFailed,
      inFlightEndAfterKillMs: quantiles(endMs),
      recoveryMs: quantiles(recoveryMs),
      pingDuringRestart: [...pingSeen],
    });
  });
});

describe("executor crash with DJL's default retry_threshold=0", () => {
  let s: LiveServer;
  before(async () => {
    s = await startLiveServer();
  });
  after(() => s.close());

  it("/ping answers 500 FAILED after the first crash, and requests are still served", async () => {
    const before = await getJson(`${s.url}/ping`);
    assert.deepEqual([before.status, before.body], [200, { tiny: { status: "Healthy" } }]);
    const x = post(s.url, "/invocations", { inputs: "x", parameters: LONG, stream: true });
    await x.firstChunk;
    await cpuExecutorOf(engineOf(s)).worker.terminate();
    assert.equal(lastLine((await x.done).body).details !== undefined, true);
    const failed = await getJson(`${s.url}/ping`);
    assert.deepEqual([failed.status, failed.body], [500, { tiny: { status: "FAILED" } }]);
    await waitFor("a 200 after the crash", async () => {
      const r = await post(s.url, "/invocations", { inputs: "After", parameters: { max_new_tokens: 2 } })
        .done;
      return r.status === 200 ? true : undefined;
    });
    assert.equal((await getJson(`${s.url}/ping`)).status, 500, "FAILED stays reported (spec §5.8)");
  });
});
