// Hostile input at every route, with fast-check, against the real app and tiny model (max_model_len 32
// keeps any accepted generation short). Random methods, paths, queries, content types and bodies:
// malformed and deep JSON, huge numbers, wrong types in every LMI/OpenAI field, invalid UTF-8. Only
// answers below 500 may come out, every answer within a bound, nothing logged as a server failure, and
// the server serves normally afterwards. Oversized headers and raw garbage go over a real socket.
import assert from "node:assert/strict";
import { connect } from "node:net";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import {
  engineOf,
  getJson,
  type LiveServer,
  post,
  recordFigures,
  rounds,
  startLiveServer,
} from "./helpers.ts";

const ROUTES = [
  "/invocations",
  "/predictions/tiny",
  "/predictions/tiny/v1",
  "/models/tiny/invoke",
  "/v1/chat/completions",
  "/v1/completions",
  "/ping",
  "/models",
  "/models/nope",
  "/models/nope/2",
  "/server/logging",
  "/server/metrics",
  "/",
];
const METHODS = ["GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "HEAD"] as const;
// Mutating the served model (DELETE, PUT scale to 0, POST /models with a url that would go to the hub)
// is legitimate and answered by design; the fuzzer keeps off those few so it can keep fuzzing the rest.
const isMutation = (method: string, path: string, query: string) =>
  (method === "DELETE" && path.startsWith("/models/tiny")) ||
  (method === "PUT" && path.startsWith("/models/tiny")) ||
  (method === "POST" && path === "/models" && /(^|&)url=/.test(query));

const hostile = fc.oneof(
  fc.constantFrom(1e308, -1e308, 2 ** 53 + 1, -1, 0, 1.5, -0, 1e-320),
  fc.constantFrom("1e99999", "NaN", "Infinity", "", "\u0000", "\ud800", "🙂".repeat(1000)),
  fc.constantFrom(null, true, false, [], {}, [[[]]], { a: { b: {} } }),
  fc.integer(),
  fc.double(),
  fc.string({ maxLength: 50 }),
  fc.array(fc.integer(), { maxLength: 20 }),
);

const PARAM_KEYS = [
  "max_new_tokens",
  "temperature",
  "top_k",
  "top_p",
  "do_sample",
  "seed",
  "stop",
  "repetition_penalty",
  "logit_bias",
  "top_n_tokens",
  "details",
  "decoder_input_details",
  "return_full_text",
  "ignore_eos",
  "truncate",
  "decoding_strategy",
  "max_tokens",
  "n",
  "logprobs",
];

const lmiBody = fc.record(
  {
    inputs: fc.oneof(
      fc.string({ maxLength: 40 }),
      hostile,
      fc.array(fc.string({ maxLength: 10 }), { maxLength: 3 }),
    ),
    parameters: fc.oneof(fc.dictionary(fc.constantFrom(...PARAM_KEYS), hostile, { maxKeys: 4 }), hostile),
    stream: fc.oneof(fc.boolean(), hostile),
  },
  { requiredKeys: [] },
);
const chatBody = fc.record(
  {
    messages: fc.oneof(
      fc.array(
        fc.record({
          role: fc.oneof(fc.constantFrom("user", "system", "assistant", "tool"), hostile),
          content: hostile,
        }),
        { maxLength: 3 },
      ),
      hostile,
    ),
    prompt: hostile,
    model: hostile,
    max_tokens: hostile,
    stream: fc.oneof(fc.boolean(), hostile),
    stream_options: hostile,
    temperature: hostile,
    logprobs: hostile,
    top_logprobs: hostile,
  },
  { requiredKeys: [] },
);
const deepJson = fc
  .tuple(fc.integer({ min: 1, max: 200_000 }), fc.boolean())
  .map(([n, arr]) => (arr ? "[".repeat(n) + "]".repeat(n) : `${'{"a":'.repeat(n)}1${"}".repeat(n)}`));
const body = fc.oneof(
  lmiBody.map((b) => JSON.stringify(b)),
  chatBody.map((b) => JSON.stringify(b)),
  fc.jsonValue({ maxDepth: 6 }).map((v) => JSON.stringify(v)),
  deepJson,
  fc.string({ maxLength: 200 }),
  fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)), // invalid UTF-8 among them
  fc.constantFrom('{"inputs": 1e99999}', '{"inputs":"x","parameters":{"max_new_tokens":1e400}}', "", "{"),
);
const contentType = fc.oneof(
  fc.constantFrom(
    "application/json",
    "application/json; charset=latin1",
    "text/plain",
    "text/csv",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "multipart/form-data",
    "application/octet-stream",
    "image/png",
  ),
  fc.string({ maxLength: 30 }),
);
const query = fc.oneof(
  fc.constant(""),
  fc
    .dictionary(
      fc.constantFrom(
        "model_name",
        "model_version",
        "min_worker",
        "max_worker",
        "limit",
        "next_page_token",
        "level",
        "name[]",
        "synchronous",
        "url",
      ),
      fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom("-1", "1e9", "tiny", "nope", "%zz", "0")),
      { maxKeys: 3 },
    )
    .map((d) =>
      Object.entries(d)
        .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
        .join("&"),
    ),
);
const anyRequest = fc.record({
  method: fc.constantFrom(...METHODS),
  // A request line always has a path starting with "/" (fc.webPath may give "" or "a/b").
  path: fc.oneof(
    fc.constantFrom(...ROUTES),
    fc.webPath().map((p) => (p.startsWith("/") ? p : `/${p}`)),
  ),
  query,
  contentType: fc.option(contentType, { nil: undefined }),
  body,
});
// Most runs aim at the inference routes with JSON, so the fuzzing reaches validation and the engine
// rather than stopping at 404/405/415.
const inferenceRequest = fc.record({
  method: fc.constant("POST" as const),
  path: fc.constantFrom(
    "/invocations",
    "/predictions/tiny",
    "/models/tiny/invoke",
    "/v1/chat/completions",
    "/v1/completions",
  ),
  query: fc.constant(""),
  contentType: fc.constantFrom("application/json", undefined),
  body: fc.oneof(
    { arbitrary: lmiBody.map((b) => JSON.stringify(b)), weight: 3 },
    { arbitrary: chatBody.map((b) => JSON.stringify(b)), weight: 3 },
    { arbitrary: body, weight: 1 },
  ),
});
const request = fc.oneof({ arbitrary: inferenceRequest, weight: 3 }, { arbitrary: anyRequest, weight: 1 });

describe("hostile input", () => {
  let s: LiveServer;
  before(async () => {
    s = await startLiveServer({ env: { OPTION_MAX_MODEL_LEN: "32" } });
  });
  after(() => s.close());

  it("random requests at every route: only answers below 500, each within 20 s", async () => {
    const byStatus: Record<string, number> = {};
    let slowestMs = 0;
    let runs = 0;
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        const q = r.query === "" ? "" : `?${r.query}`;
        if (isMutation(r.method, r.path, r.query)) return;
        const hasBody = r.method !== "GET" && r.method !== "HEAD";
        const t0 = performance.now();
        let timer: NodeJS.Timeout | undefined;
        const res = await Promise.race([
          s.h.app.inject({
            method: r.method,
            url: r.path + q,
            headers: r.contentType === undefined ? {} : { "content-type": r.contentType },
            ...(hasBody ? { payload: r.body } : {}),
          }),
          new Promise<never>((_, fail) => {
            timer = setTimeout(() => fail(new Error(`hang: ${r.method} ${r.path}${q}`)), 20_000);
          }),
        ]).finally(() => clearTimeout(timer));
        const ms = performance.now() - t0;
        slowestMs = Math.max(slowestMs, ms);
        runs++;
        byStatus[res.statusCode] = (byStatus[res.statusCode] ?? 0) + 1;
        assert.ok(
          res.statusCode < 500,
          `${r.method} ${r.path}${q} -> ${res.statusCode} ${res.body.slice(0, 300)}`,
        );
        // A 200 stream must not carry a server failure inside it either.
        assert.doesNotMatch(res.body, /InternalServerException|"code":\s*5\d\d/);
      }),
      { numRuns: rounds(200, 3000), seed: process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : undefined },
    );
    const failures = s.h.logLines.filter((l) => / failed: |failed after headers/.test(l));
    assert.deepEqual(failures, [], "the server logged failures");
    const engine = engineOf(s);
    assert.equal(engine.stats().numRunning + engine.stats().numWaiting, 0);
    assert.equal(s.h.registry.get("tiny").inFlight, 0);
    const ok = await post(s.url, "/invocations", {
      inputs: "After the storm",
      parameters: { max_new_tokens: 3 },
    }).done;
    assert.equal(ok.status, 200);
    recordFigures("fuzz-http", {
      promise: "random and malformed requests at every route get only 4xx (or 2xx), never 5xx, crash or hang",
      requests: runs,
      byStatus,
      slowestMs: Math.round(slowestMs),
    });
  });

  it("oversized headers and raw garbage over a real socket get 4xx or a closed socket, never a crash", async () => {
    const port = Number(new URL(s.url).port);
    const raw = (bytes: Buffer | string) =>
      new Promise<string>((done) => {
        const sock = connect(port, "127.0.0.1");
        let got = "";
        sock.on("data", (d) => {
          got += d.toString("latin1");
        });
        sock.on("close", () => done(got));
        sock.on("error", () => done(got));
        sock.setTimeout(10_000, () => sock.destroy());
        sock.end(bytes);
      });
    const statusOf = (reply: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(reply)?.[1] ?? 0);
    const cases: Array<[string, Buffer | string]> = [
      ["20 KiB header", `GET /ping HTTP/1.1\r\nhost: x\r\nx-big: ${"a".repeat(20 * 1024)}\r\n\r\n`],
      ["1 MiB header", `POST /invocations HTTP/1.1\r\nhost: x\r\nx-big: ${"a".repeat(1 << 20)}\r\n\r\n`],
      ["5000 headers", `GET /ping HTTP/1.1\r\nhost: x\r\n${"x-h: 1\r\n".repeat(5000)}\r\n`],
      ["garbage request line", Buffer.from([0xff, 0xfe, 0x00, 0x13, 0x37, 0x0d, 0x0a, 0x0d, 0x0a])],
      [
        "bad chunked body",
        "POST /invocations HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
      ],
      [
        "content-length lie",
        'POST /invocations HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\n{"inputs":"x"}',
      ],
      [
        "declared 65 MiB body",
        `POST /invocations HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${65 * 2 ** 20}\r\n\r\n{`,
      ],
    ];
    const seen: Record<string, number> = {};
    for (const [name, bytes] of cases) {
      const status = statusOf(await raw(bytes));
      seen[name] = status;
      assert.ok(status === 0 || (status >= 400 && status < 500), `${name}: HTTP ${status}`);
    }
    assert.equal(seen["20 KiB header"], 431, "headers above 16 KiB are refused by default");
    assert.equal(seen["declared 65 MiB body"], 413, "bodies above max_request_size (64 MiB) are refused");
    const ping = await getJson(`${s.url}/ping`);
    assert.equal(ping.status, 200);
    recordFigures("fuzz-socket", {
      promise: "oversized headers and raw garbage get 4xx or a closed socket",
      cases: seen,
    });
  });
});
