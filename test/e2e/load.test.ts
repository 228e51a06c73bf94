// 64 concurrent streaming clients against a real `lmi serve` on loopback (bounded: 2 requests each,
// 12 tokens, 240 s deadline): every stream well-formed, no request lost, queue slots all released.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { runLoad, summarize } from "./load-stream.ts";
import { type ServeProcess, startServe, testModelDir } from "./serve-process.ts";

describe("load: 64 concurrent streaming clients", () => {
  let server: ServeProcess;
  before(async () => {
    server = await startServe([testModelDir()], { LMI_LOG_LEVEL: "warn", SERVING_PROMETHEUS: "true" });
  });
  after(async () => {
    await server?.stop();
  });

  it("every stream is well-formed and every request answered", async () => {
    const load = runLoad({
      url: server.url,
      clients: 64,
      requestsPerClient: 2,
      maxNewTokens: 12,
      deadlineMs: 240_000,
    });
    // The executor computes in a worker thread, so the HTTP loop answers health checks under load.
    await new Promise((r) => setTimeout(r, 1500));
    const t0 = performance.now();
    const ping = await fetch(`${server.url}/ping`);
    const pingMs = performance.now() - t0;
    const r = await load;
    console.log(summarize(r));
    console.log(`/ping under load: ${pingMs.toFixed(0)} ms`);
    assert.equal(ping.status, 200);
    assert.ok(pingMs < 1000, `/ping took ${pingMs} ms under load`);
    assert.deepEqual(r.malformed, []);
    assert.deepEqual(r.failed, []);
    assert.equal(r.sent, 128);
    assert.equal(r.ok, 128);
    const metrics = await (await fetch(`${server.url}/server/metrics`)).text();
    assert.match(metrics, /lmi_requests_in_flight\{model="[^"]+"\} 0/);
    assert.match(metrics, /lmi_num_requests_running\{model="[^"]+"\} 0/);
    // Every request reached the engine's end: length or EOS, never error or abort.
    const finished = [
      ...metrics.matchAll(/lmi_requests_finished_total\{model="[^"]+",finish_reason="(\w+)"\} (\d+)/g),
    ];
    assert.deepEqual(
      finished.map((m) => m[1]).filter((r) => r !== "length" && r !== "eos_token"),
      [],
    );
    assert.equal(
      finished.reduce((n, m) => n + Number(m[2]), 0),
      128,
    );
  });
});
