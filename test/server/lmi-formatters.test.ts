import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { ServingOptions } from "../../src/registry/types.ts";
import { harness } from "./harness.ts";
import { addModel, type Script, ScriptedEngine, scriptedModel } from "./scripted-engine.ts";

const words = [" In", " the", " beginning"];

async function setup(script: Partial<Script> = {}, options: Partial<ServingOptions> = {}) {
  const engine = new ScriptedEngine({ words, ...script });
  const h = harness(async () => scriptedModel(engine, options));
  await addModel(h.registry, "tiny");
  return { ...h, engine };
}

function post(app: Awaited<ReturnType<typeof setup>>["app"], body: unknown, url = "/invocations") {
  return app.inject({
    method: "POST",
    url,
    headers: { "content-type": "application/json" },
    payload: JSON.stringify(body),
  });
}

describe("LMI formatters (spec §3.3, §3.4, §3.6)", () => {
  it("json: generated_text only, with Content-Length", async () => {
    const { app } = await setup();
    const res = await post(app, { inputs: "God said" });
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers["content-type"]), /^application\/json/);
    assert.equal(res.headers["content-length"], String(Buffer.byteLength(res.body)));
    assert.deepEqual(JSON.parse(res.body), { generated_text: " In the beginning" });
  });

  it("json with details, top_n_tokens and return_full_text", async () => {
    const { app } = await setup();
    const res = await post(app, {
      inputs: "God said",
      parameters: { details: true, top_n_tokens: 2, return_full_text: true, max_new_tokens: 2 },
    });
    const body = JSON.parse(res.body);
    assert.equal(body.generated_text, "God said In the");
    assert.equal(body.details.finish_reason, "length");
    assert.equal(body.details.generated_tokens, 2);
    assert.equal(body.details.inputs, "God said");
    assert.deepEqual(body.details.tokens[0], { id: 1, text: " In", log_prob: -0.5 });
    assert.equal(body.details.top_tokens.length, 2);
    assert.deepEqual(body.details.top_tokens[0][1], { id: 51, text: "alt1", log_prob: -2 });
  });

  it("stream: jsonlines token lines, generated_text and details on the last line only", async () => {
    const { app } = await setup();
    const res = await post(app, { inputs: "God said", parameters: { details: true }, stream: true });
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers["content-type"], "application/jsonlines");
    assert.equal(res.headers["transfer-encoding"], "chunked");
    assert.equal(res.headers["x-request-id"] !== undefined, true);
    const lines = res.body
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l));
    assert.equal(lines.length, 3);
    assert.deepEqual(lines[0], { token: { id: 1, text: " In", log_prob: -0.5 } });
    assert.equal(lines[1].generated_text, undefined);
    assert.equal(lines[2].generated_text, " In the beginning");
    assert.deepEqual(lines[2].details, { finish_reason: "length", generated_tokens: 3, inputs: "God said" });
  });

  it("option.output_formatter=jsonlines streams without stream:true; per-request sse overrides it", async () => {
    const { app } = await setup({}, { outputFormatter: "jsonlines" });
    const a = await post(app, { inputs: "x" });
    assert.equal(a.headers["content-type"], "application/jsonlines");
    assert.equal(a.body.trimEnd().split("\n").length, 3);
    const b = await post(app, { inputs: "x", parameters: { output_formatter: "sse" } });
    assert.equal(b.headers["content-type"], "text/event-stream");
    const events = b.body.split("\n\n").filter((e) => e !== "");
    assert.equal(events.length, 3);
    assert.ok(events.every((e) => e.startsWith("data: ")));
    assert.equal(JSON.parse(events[2].slice(6)).generated_text, " In the beginning");
  });

  it("3p and 3p_stream (Bedrock shapes)", async () => {
    const { app } = await setup();
    const one = JSON.parse((await post(app, { inputs: "abc", parameters: { output_formatter: "3p" } })).body);
    assert.deepEqual(one, {
      body: {
        generation: " In the beginning",
        prompt_token_count: 3,
        generation_token_count: 3,
        stop_reason: "length",
      },
      metering: { inputTokenCount: 3, outputTokenCount: 3 },
      content_type: "application/json",
    });
    const res = await post(app, { inputs: "abc", parameters: { output_formatter: "3p_stream" } });
    assert.equal(res.headers["content-type"], "application/jsonlines");
    const lines = res.body
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l));
    assert.equal(lines.length, 3);
    assert.equal(lines[0].body.generation, " In");
    assert.equal(lines[2].body.stop_reason, "length");
    assert.equal(lines[2].body.generation_token_count, 3);
    assert.equal(lines[1].body.stop_reason, null);
  });

  it("none: raw text, plain or streamed", async () => {
    const { app } = await setup();
    const a = await post(app, { inputs: "abc", parameters: { output_formatter: "none" } });
    assert.match(String(a.headers["content-type"]), /^text\/plain/);
    assert.equal(a.body, " In the beginning");
    const b = await post(app, { inputs: "abc", stream: true, parameters: { output_formatter: "none" } });
    assert.equal(b.body, " In the beginning");
    assert.equal(b.headers["transfer-encoding"], "chunked");
  });

  it("tgi_compat: array-wrapped json with logprob/special and seed; SSE TGI lines when streaming", async () => {
    const { app } = await setup({}, { tgiCompat: true });
    const a = JSON.parse((await post(app, { inputs: "abc", parameters: { max_new_tokens: 2 } })).body);
    assert.ok(Array.isArray(a) && a.length === 1);
    assert.equal(a[0].generated_text, " In the");
    assert.deepEqual(a[0].details.tokens[0], { id: 1, text: " In", logprob: -0.5, special: false });
    assert.equal(a[0].details.seed, 7);
    const b = await post(app, { inputs: "abc", stream: true });
    assert.equal(b.headers["content-type"], "text/event-stream");
    const events = b.body
      .split("\n\n")
      .filter((e) => e)
      .map((e) => JSON.parse(e.slice(6)));
    assert.deepEqual(events[0], {
      index: 0,
      token: { id: 1, text: " In", logprob: -0.5, special: false },
      generated_text: null,
      details: null,
    });
    assert.equal(events[2].generated_text, " In the beginning");
    assert.equal(events[2].details.finish_reason, "length");
  });

  it("unknown output_formatter -> 424 naming it", async () => {
    const { app } = await setup();
    const res = await post(app, { inputs: "abc", parameters: { output_formatter: "xml" } });
    assert.equal(res.statusCode, 424);
    assert.match(JSON.parse(res.body).error, /output_formatter 'xml'/);
  });
});

describe("LMI input errors and failures", () => {
  it("parse failures answer 424 {code, error} with the LMI prefix and the field", async () => {
    const { app } = await setup();
    const cases: Array<[unknown, RegExp]> = [
      [{ inputs: ["a", "b"] }, /'inputs' field must be a string/],
      [{ parameters: {} }, /'inputs' field must be a string/],
      [{ inputs: "a", parameters: [] }, /'parameters' field must be an object/],
      [{ inputs: "a", parameters: { max_new_tokens: -1 } }, /max_new_tokens/],
      [{ inputs: "a", parameters: { temperature: "hot" } }, /temperature/],
      [{ inputs: "a", adapters: "french" }, /'adapters'/],
    ];
    for (const [body, re] of cases) {
      const res = await post(app, body);
      assert.equal(res.statusCode, 424, JSON.stringify(body));
      const b = JSON.parse(res.body);
      assert.equal(b.code, 424);
      assert.match(b.error, /^Input Parsing failed\. Ensure that the request payload is valid\./);
      assert.match(b.error, re);
    }
    const bad = await app.inject({
      method: "POST",
      url: "/invocations",
      headers: { "content-type": "application/json" },
      payload: "{oops",
    });
    assert.equal(bad.statusCode, 424);
    assert.match(JSON.parse(bad.body).error, /Invalid JSON/);
    // Nothing else disturbed.
    assert.equal((await post(app, { inputs: "ok" })).statusCode, 200);
  });

  it("decodes text/plain and csv bodies; rejects unknown content types", async () => {
    const { app, engine } = await setup();
    const a = await app.inject({
      method: "POST",
      url: "/invocations",
      headers: { "content-type": "text/plain" },
      payload: "Let there be",
    });
    assert.equal(a.statusCode, 200);
    assert.equal(engine.requests.at(-1)?.prompt, "Let there be");
    const b = await app.inject({
      method: "POST",
      url: "/invocations",
      headers: { "content-type": "text/csv" },
      payload: 'inputs\n"a, b"\n',
    });
    assert.equal(b.statusCode, 200);
    assert.equal(engine.requests.at(-1)?.prompt, "a, b");
    const c = await app.inject({
      method: "POST",
      url: "/invocations",
      headers: { "content-type": "image/png" },
      payload: Buffer.from([1, 2]),
    });
    assert.equal(c.statusCode, 424);
    assert.match(JSON.parse(c.body).error, /Unsupported Content-Type 'image\/png'/);
  });

  it("a prompt longer than the model allows -> 424 before any byte is streamed", async () => {
    const { app } = await setup({ maxPromptChars: 10 });
    for (const stream of [false, true]) {
      const t0 = Date.now();
      const res = await post(app, { inputs: "x".repeat(50), stream });
      assert.equal(res.statusCode, 424);
      const b = JSON.parse(res.body);
      assert.equal(b.type, "PromptTooLongException");
      assert.match(b.message, /50 tokens/);
      assert.ok(Date.now() - t0 < 1000);
    }
  });

  it("an error after streaming began ends the stream with the spec's error line (HTTP stays 200)", async () => {
    const { app } = await setup({ failAfter: 2 });
    const res = await post(app, { inputs: "x", stream: true });
    assert.equal(res.statusCode, 200);
    const lines = res.body
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l));
    assert.equal(lines.length, 3);
    assert.deepEqual(lines[2].token, {
      id: -1,
      text: "",
      log_prob: -1,
      special_token: true,
      error_msg: "boom in step",
    });
    assert.equal(lines[2].details.finish_reason, "error");
    const plain = await post(app, { inputs: "x" });
    assert.equal(plain.statusCode, 424);
    assert.deepEqual(JSON.parse(plain.body), { code: 424, error: "boom in step" });
  });

  it("a thrown error mid-stream also ends with the error line", async () => {
    const { app } = await setup({ throwAfter: { count: 1, error: new Error("executor crashed") } });
    const res = await post(app, { inputs: "x", stream: true });
    const lines = res.body
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l));
    assert.equal(lines.at(-1).token.error_msg, "executor crashed");
    assert.equal(lines.at(-1).details.finish_reason, "error");
  });
});
