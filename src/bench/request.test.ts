// The request path against a scripted local HTTP server: framing (SSE and jsonlines, lines split across
// network chunks), timing (TTFT, one ITL gap per later chunk, latency at the last chunk), the counting
// rules (server count preferred over chunk count) and failures (HTTP errors, error lines, empty streams).
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import { BACKENDS } from "./backends.ts";
import { decodeStreamLine, sendRequest, timedLines } from "./request.ts";

type Script = Array<string | number>; // strings are written, numbers are pauses in ms
const scripts: Record<string, { status?: number; parts: Script }> = {};
let server: Server;
let base = "";

before(async () => {
  server = createServer(async (req, res) => {
    const s = scripts[req.url ?? ""];
    res.writeHead(s?.status ?? 200, { "content-type": "text/event-stream" });
    for (const p of s?.parts ?? []) {
      if (typeof p === "number") await new Promise((r) => setTimeout(r, p));
      else res.write(p);
    }
    res.end();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => server.close());

const input = { prompt: "hi", promptLen: 2, outputLen: 3, ignoreEos: true };
const sse = (o: unknown) => `data: ${JSON.stringify(o)}\n\n`;
const jl = (o: unknown) => `${JSON.stringify(o)}\n`;

test("decodeStreamLine strips SSE framing and skips comments, fields and [DONE]", () => {
  assert.deepEqual(decodeStreamLine('data: {"a":1}'), { a: 1 });
  assert.deepEqual(decodeStreamLine('data:{"a":1}'), { a: 1 });
  assert.deepEqual(decodeStreamLine('{"token":{"id":1}}'), { token: { id: 1 } });
  for (const l of ["", "  ", ": keep-alive", "data: [DONE]", "event: message", "id: 3"]) {
    assert.equal(decodeStreamLine(l), null, l);
  }
  assert.throws(() => decodeStreamLine("data: {oops"));
});

test("timedLines joins lines split across chunks and keeps an unterminated last line", async () => {
  const enc = new TextEncoder();
  const parts = ['{"a":', '1}\n{"b"', ":2}\n", '{"c":3}'];
  let t = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(c) {
      const p = parts.shift();
      if (p === undefined) c.close();
      else c.enqueue(enc.encode(p));
    },
  });
  const got: Array<[string, number]> = [];
  for await (const { line, t: at } of timedLines(body, () => ++t)) got.push([line, at]);
  assert.deepEqual(got, [
    ['{"a":1}', 2],
    ['{"b":2}', 3],
    ['{"c":3}', 5],
  ]);
});

test("openai: TTFT at the first choices chunk, ITL per later chunk, usage count wins", async () => {
  const chunk = (text: string) => sse({ choices: [{ index: 0, text, finish_reason: null }], usage: null });
  scripts["/v1/completions"] = {
    parts: [
      60,
      chunk("a"),
      40,
      chunk("b"),
      40,
      chunk(""),
      5,
      sse({ choices: [], usage: { completion_tokens: 7 } }),
      "data: [DONE]\n\n",
    ],
  };
  const r = await sendRequest(BACKENDS.openai, input, { url: `${base}/v1/completions`, timeoutMs: 5000 });
  assert.equal(r.success, true, r.error);
  assert.equal(r.outputTokens, 7, "the server's usage count is preferred over the 2 non-empty chunks");
  assert.ok(r.ttftMs >= 55 && r.ttftMs < 3000, `ttft ${r.ttftMs}`);
  assert.equal(r.itlMs.length, 2);
  // Server and client share a busy machine, so one read can run late and shrink the next gap; the
  // cumulative arrival times cannot run ahead of the server's pauses.
  assert.ok(r.ttftMs + r.itlMs[0] >= 95, `itl ${r.itlMs}`);
  assert.ok(r.ttftMs + r.itlMs[0] + r.itlMs[1] >= 135, `itl ${r.itlMs}`);
  // Latency ends at the last chunk with choices, not at the usage message.
  assert.ok(Math.abs(r.latencyMs - (r.ttftMs + r.itlMs[0] + r.itlMs[1])) < 1e-6);
});

test("openai without usage falls back to counting chunks with text", async () => {
  const chunk = (text: string) => sse({ choices: [{ index: 0, text }] });
  scripts["/nousage"] = { parts: [chunk("a"), chunk("b"), chunk(""), "data: [DONE]\n\n"] };
  const r = await sendRequest(BACKENDS.openai, input, { url: `${base}/nousage`, timeoutMs: 5000 });
  assert.equal(r.outputTokens, 2);
  assert.equal(r.itlMs.length, 2);
});

test("lmi jsonlines: one token per line, details.generated_tokens on the last line", async () => {
  const tok = (id: number) => ({ token: { id, text: ` t${id}`, log_prob: -1 } });
  scripts["/invocations"] = {
    parts: [
      jl(tok(1)),
      80,
      jl(tok(2)) +
        jl({ ...tok(3), generated_text: "x", details: { finish_reason: "length", generated_tokens: 3 } }),
    ],
  };
  const r = await sendRequest(BACKENDS.lmi, input, { url: `${base}/invocations`, timeoutMs: 5000 });
  assert.equal(r.success, true, r.error);
  assert.equal(r.outputTokens, 3);
  assert.equal(r.itlMs.length, 2);
  assert.ok(r.ttftMs + r.itlMs[0] >= 80, "the second line came 80 ms after the first");
  assert.ok(r.itlMs[1] < 15, "lines that arrive together share one timestamp (ITL ~0), as in vLLM");
});

test("lmi body asks for details and maps ignore_eos to ignore_eos_token", () => {
  const b = BACKENDS.lmi.buildBody({ prompt: "p", outputLen: 5, ignoreEos: true });
  assert.deepEqual(b, {
    inputs: "p",
    parameters: { max_new_tokens: 5, do_sample: false, details: true, ignore_eos_token: true },
    stream: true,
  });
  const o = BACKENDS.openai.buildBody({ prompt: [1, 2], outputLen: 5, ignoreEos: true, model: "m" });
  assert.equal(o.ignore_eos, true);
  assert.deepEqual(o.prompt, [1, 2]);
  assert.deepEqual(o.stream_options, { include_usage: true });
  const c = BACKENDS["openai-chat"].buildBody({ prompt: "p", outputLen: 5, ignoreEos: false });
  assert.equal(c.max_completion_tokens, 5);
  assert.equal(c.ignore_eos, undefined);
});

test("failures: HTTP status, LMI error line, Java-level error, OpenAI error chunk, empty stream", async () => {
  scripts["/500"] = { status: 503, parts: ['{"code":503,"error":"busy"}'] };
  scripts["/errline"] = {
    parts: [
      jl({ token: { id: 1, text: "a" } }),
      jl({ token: { id: -1, text: "", error_msg: "boom" }, details: { finish_reason: "error" } }),
    ],
  };
  scripts["/java"] = {
    parts: [jl({ token: { id: 1, text: "a" } }), '{"code":424,"error":"exception occurred"}'],
  };
  scripts["/oaerr"] = { parts: [sse({ object: "error", error: { message: "bad things", code: 500 } })] };
  scripts["/empty"] = { parts: ["data: [DONE]\n\n"] };
  const cases: Array<[string, "lmi" | "openai", RegExp]> = [
    ["/500", "lmi", /HTTP 503: .*busy/],
    ["/errline", "lmi", /boom/],
    ["/java", "lmi", /424: exception occurred/],
    ["/oaerr", "openai", /bad things/],
    ["/empty", "openai", /without any generated chunk/],
  ];
  for (const [path, b, re] of cases) {
    const r = await sendRequest(BACKENDS[b], input, { url: `${base}${path}`, timeoutMs: 5000 });
    assert.equal(r.success, false, path);
    assert.match(r.error ?? "", re, path);
  }
  scripts["/slow"] = { parts: [1000, jl({ token: { id: 1 } })] };
  const r = await sendRequest(BACKENDS.lmi, input, { url: `${base}/slow`, timeoutMs: 100 });
  assert.match(r.error ?? "", /timed out after 100 ms/);
});

test("openai-chat and tgi parse their own chunk shapes", () => {
  const chat = BACKENDS["openai-chat"].parse({ choices: [{ delta: { role: "assistant", content: "Hi" } }] });
  assert.deepEqual(chat, { isChunk: true, numTokens: 1, reportedTokens: undefined });
  const roleOnly = BACKENDS["openai-chat"].parse({ choices: [{ delta: { role: "assistant" } }] });
  assert.deepEqual(roleOnly, { isChunk: true, numTokens: 0, reportedTokens: undefined });
  const last = BACKENDS.tgi.parse({
    index: 3,
    token: { id: 5, text: "x", logprob: -1, special: false },
    generated_text: "abc",
    details: { finish_reason: "length", generated_tokens: 4 },
  });
  assert.deepEqual(last, { isChunk: true, numTokens: 1, reportedTokens: 4 });
  assert.equal(
    BACKENDS.tgi.parse({ error: "Input validation error", error_type: "validation" }).error,
    "Input validation error",
  );
});
