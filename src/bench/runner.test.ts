// The run loop against a scripted local server: the readiness request and warm-ups are sent but not
// measured, --max-concurrency caps the requests in flight at the server, arrivals follow the seeded
// schedule, and failures are counted with their reason.
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import { arrivalOffsetsMs } from "./arrivals.ts";
import { BACKENDS } from "./backends.ts";
import type { BenchRequest } from "./datasets.ts";
import { Rng } from "./random.ts";
import { type RunOptions, runBenchmark } from "./runner.ts";

let server: Server;
let url = "";
let inFlight = 0;
let maxInFlight = 0;
let received: Array<{ max: number; inputs: string }> = [];

before(async () => {
  server = createServer((req, res) => {
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", async () => {
      const b = JSON.parse(body);
      received.push({ max: b.parameters.max_new_tokens, inputs: b.inputs });
      if (b.inputs === "fail") {
        res.writeHead(424, { "content-type": "application/json" });
        res.end('{"code":424,"error":"bad input"}');
        return;
      }
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      res.writeHead(200, { "content-type": "application/jsonlines" });
      // "short" plays a server that stops at EOS despite ignore_eos.
      const n = b.inputs === "short" ? 1 : b.parameters.max_new_tokens;
      for (let i = 0; i < n; i++) {
        await new Promise((r) => setTimeout(r, 10));
        res.write(`${JSON.stringify({ token: { id: i, text: "x" } })}\n`);
      }
      inFlight--;
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/invocations`;
});
after(() => server.close());

const reqs = (n: number, outputLen = 3): BenchRequest[] =>
  Array.from({ length: n }, (_, i) => ({ prompt: `p${i}`, promptLen: 5, outputLen }));

function opts(o: Partial<RunOptions>): RunOptions {
  return {
    url,
    backend: BACKENDS.lmi,
    requests: reqs(6),
    ratePerS: Number.POSITIVE_INFINITY,
    burstiness: 1,
    maxConcurrency: null,
    numWarmups: 0,
    ignoreEos: true,
    timeoutMs: 5000,
    percentiles: [99],
    slo: {},
    progress: false,
    ...o,
  };
}

test("max-concurrency caps requests in flight; readiness and warm-ups are sent but not measured", async () => {
  received = [];
  maxInFlight = 0;
  const r = await runBenchmark(opts({ maxConcurrency: 2, numWarmups: 3 }), new Rng(1));
  assert.equal(maxInFlight, 2);
  // 1 readiness (first prompt, min(3, 8) tokens) + 3 warm-ups + 6 measured.
  assert.equal(received.length, 10);
  assert.equal(r.results.length, 6);
  assert.equal(r.metrics.completed, 6);
  assert.equal(r.metrics.totalOutputTokens, 18);
  assert.equal(r.numLengthMismatches, 0);
  // Six 30 ms requests two at a time take at least three rounds.
  assert.ok(r.metrics.durationS >= 0.085, `duration ${r.metrics.durationS}`);
});

test("without a cap every request is in flight at once", async () => {
  maxInFlight = 0;
  await runBenchmark(opts({ requests: reqs(5, 10) }), new Rng(1));
  assert.equal(maxInFlight, 5);
});

test("a finite rate sends each request no earlier than its seeded arrival time", async () => {
  const n = 8;
  const r = await runBenchmark(opts({ requests: reqs(n, 1), ratePerS: 40, burstiness: 1 }), new Rng(7));
  const offsets = arrivalOffsetsMs(n, 40, 1, new Rng(7));
  const t0 = r.results[0].startMs;
  r.results.forEach((x, i) => {
    // Times are relative to the first request's send, a moment after the schedule's zero.
    assert.ok(x.startMs - t0 >= offsets[i] - 5, `request ${i} sent at ${x.startMs - t0} < ${offsets[i]}`);
  });
  assert.ok(r.metrics.durationS * 1000 >= offsets[n - 1]);
});

test("failures are counted with their reason; a failing readiness request stops the run", async () => {
  const mixed = [...reqs(2), { prompt: "fail", promptLen: 1, outputLen: 3 }];
  const r = await runBenchmark(opts({ requests: mixed }), new Rng(1));
  assert.equal(r.metrics.completed, 2);
  assert.equal(r.metrics.failed, 1);
  assert.deepEqual(r.errors, ['HTTP 424: {"code":424,"error":"bad input"}']);
  await assert.rejects(
    runBenchmark(opts({ requests: [{ prompt: "fail", promptLen: 1, outputLen: 3 }] }), new Rng(1)),
    /readiness request .* failed: HTTP 424/,
  );
});

test("ignore_eos length mismatches are counted", async () => {
  const r = await runBenchmark(
    opts({ requests: [...reqs(2, 2), { prompt: "short", promptLen: 1, outputLen: 4 }] }),
    new Rng(1),
  );
  assert.deepEqual(
    r.results.map((x) => x.outputTokens),
    [2, 2, 1],
  );
  assert.equal(r.numLengthMismatches, 1);
  const noEos = await runBenchmark(
    opts({ ignoreEos: false, requests: [...reqs(1, 2), { prompt: "short", promptLen: 1, outputLen: 4 }] }),
    new Rng(1),
  );
  assert.equal(noEos.numLengthMismatches, 0, "without ignore_eos a short answer is legitimate");
});
