// Every inference route, every LMI/OpenAI formatter and the engine-side error codes, in process, on
// the real tiny model (paged engine + CPU executor). Shapes are checked in detail by the scripted
// tests; here each case proves the real engine's outputs go through that path correctly.
import assert from "node:assert/strict";
import { request } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { testModelDir } from "../e2e/serve-process.ts";
import { realHarness } from "./real-model-harness.ts";

const json = { "content-type": "application/json" };
const MODEL = testModelDir();

describe("real tiny model, in process", () => {
  const h = realHarness();
  before(async () => {
    const res = await h.app.inject({
      method: "POST",
      url: `/models?url=${encodeURIComponent(MODEL)}&model_name=tiny`,
    });
    assert.equal(res.statusCode, 200, res.body);
  });
  after(async () => {
    h.app.server.closeAllConnections();
    await h.app.close();
    await h.registry.closeAll();
  });
  const post = (url: string, body: unknown) =>
    h.app.inject({ method: "POST", url, headers: json, payload: JSON.stringify(body) });
  const greedy = { max_new_tokens: 6, do_sample: false, details: true };

  it("the same greedy text on /invocations, /predictions/tiny, /models/tiny/invoke", async () => {
    const texts = await Promise.all(
      ["/invocations", "/predictions/tiny", "/models/tiny/invoke"].map(async (u) => {
        const r = await post(u, { inputs: "In the beginning", parameters: greedy });
        assert.equal(r.statusCode, 200, u);
        return JSON.parse(r.body).generated_text as string;
      }),
    );
    assert.equal(new Set(texts).size, 1);
    assert.ok(texts[0].length > 0);
  });

  it("json details: tokens add up to generated_text, generated_tokens = max_new_tokens, top_tokens, prefill", async () => {
    const r = JSON.parse(
      (
        await post("/invocations", {
          inputs: "In the beginning",
          parameters: { ...greedy, top_n_tokens: 2, decoder_input_details: true },
        })
      ).body,
    );
    assert.equal(r.details.tokens.map((t: { text: string }) => t.text).join(""), r.generated_text);
    assert.equal(r.details.generated_tokens, 6);
    assert.equal(r.details.finish_reason, "length");
    assert.equal(r.details.top_tokens.length, 6);
    assert.equal(r.details.top_tokens[0].length, 2);
    assert.ok(r.details.prefill.length > 0);
    // Greedy: the chosen token is the most likely alternative.
    assert.equal(r.details.top_tokens[0][0].id, r.details.tokens[0].id);
  });

  it("every LMI formatter carries the same greedy text", async () => {
    const base = JSON.parse(
      (await post("/invocations", { inputs: "And God said", parameters: greedy })).body,
    ).generated_text;
    const lines = (s: string) => s.split("\n").filter((l) => l !== "");
    const jl = await post("/invocations", { inputs: "And God said", parameters: greedy, stream: true });
    assert.equal(jl.headers["content-type"], "application/jsonlines");
    assert.equal(JSON.parse(lines(jl.body).at(-1)!).generated_text, base);
    const sse = await post("/invocations", {
      inputs: "And God said",
      parameters: { ...greedy, output_formatter: "sse" },
    });
    assert.equal(sse.headers["content-type"], "text/event-stream");
    assert.equal(JSON.parse(lines(sse.body).at(-1)!.slice(6)).generated_text, base);
    const p3 = JSON.parse(
      (
        await post("/invocations", {
          inputs: "And God said",
          parameters: { ...greedy, output_formatter: "3p" },
        })
      ).body,
    );
    assert.equal(p3.body.generation, base);
    assert.equal(p3.metering.outputTokenCount, 6);
    const p3s = await post("/invocations", {
      inputs: "And God said",
      parameters: { ...greedy, output_formatter: "3p_stream" },
    });
    assert.equal(
      lines(p3s.body)
        .map((l) => JSON.parse(l).body.generation)
        .join(""),
      base,
    );
    const none = await post("/invocations", {
      inputs: "And God said",
      parameters: { ...greedy, output_formatter: "none" },
    });
    assert.equal(none.body, base);
  });

  it("chat formatters (json_chat, jsonlines_chat, sse_chat) and completions", async () => {
    const messages = [{ role: "user", content: "Who made the light?" }];
    const a = JSON.parse(
      (await post("/v1/chat/completions", { messages, max_tokens: 5, temperature: 0 })).body,
    );
    const content = a.choices[0].message.content;
    const b = await post("/invocations", { messages, max_tokens: 5, temperature: 0, stream: true });
    assert.equal(b.headers["content-type"], "application/jsonlines");
    const bText = b.body
      .split("\n")
      .filter((l) => l)
      .map((l) => JSON.parse(l).choices[0].delta.content)
      .join("");
    assert.equal(bText, content);
    const c = await post("/v1/chat/completions", { messages, max_tokens: 5, temperature: 0, stream: true });
    assert.match(c.body, /data: \[DONE\]\n\n$/);
    const comp = JSON.parse(
      (await post("/v1/completions", { prompt: "And God said", max_tokens: 6, temperature: 0 })).body,
    );
    const lmi = JSON.parse((await post("/invocations", { inputs: "And God said", parameters: greedy })).body);
    assert.equal(comp.choices[0].text, lmi.generated_text);
    assert.equal(comp.usage.completion_tokens, 6);
  });

  it("424 for a prompt longer than the model's limit, at once, and other requests unaffected", async () => {
    const t0 = Date.now();
    const [long, ok] = await Promise.all([
      post("/invocations", { inputs: "and ".repeat(5000), stream: true }),
      post("/invocations", { inputs: "In the beginning", parameters: greedy }),
    ]);
    assert.equal(long.statusCode, 424);
    assert.equal(JSON.parse(long.body).type, "PromptTooLongException");
    assert.ok(Date.now() - t0 < 5000);
    assert.equal(ok.statusCode, 200);
  });

  it("two concurrent requests with the same x-request-id both succeed and echo it", async () => {
    const send = () =>
      h.app.inject({
        method: "POST",
        url: "/invocations",
        headers: { ...json, "x-request-id": "retry-1" },
        payload: JSON.stringify({ inputs: "In the beginning", parameters: greedy }),
      });
    const [a, b] = await Promise.all([send(), send()]);
    assert.equal(a.statusCode, 200, a.body);
    assert.equal(b.statusCode, 200, b.body);
    assert.equal(a.headers["x-request-id"], "retry-1");
    assert.equal(b.headers["x-request-id"], "retry-1");
  });

  it("424 for invalid parameters, naming the field", async () => {
    const r = await post("/invocations", { inputs: "x", parameters: { top_p: 7 } });
    assert.equal(r.statusCode, 424);
    assert.match(JSON.parse(r.body).error, /top_p/);
  });

  it("a client that disconnects mid-stream frees its slot in the engine", async () => {
    await h.app.listen({ port: 0, host: "127.0.0.1" });
    try {
      const port = (h.app.server.address() as AddressInfo).port;
      await new Promise<void>((resolve, reject) => {
        const req = request(
          { port, host: "127.0.0.1", method: "POST", path: "/invocations", headers: json },
          (res) => {
            res.once("data", () => {
              req.destroy();
              resolve();
            });
          },
        );
        req.on("error", () => {});
        req.end(
          JSON.stringify({
            inputs: "In the beginning",
            stream: true,
            parameters: { max_new_tokens: 200, ignore_eos_token: true },
          }),
        );
        setTimeout(() => reject(new Error("no data")), 10_000);
      });
      const entry = h.registry.get("tiny");
      const backend = entry.backend;
      assert.equal(backend?.kind, "engine");
      const deadline = Date.now() + 5000;
      while (
        Date.now() < deadline &&
        (entry.inFlight > 0 || (backend?.kind === "engine" && backend.engine.stats().numRunning > 0))
      ) {
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(entry.inFlight, 0);
      if (backend?.kind === "engine") assert.equal(backend.engine.stats().numRunning, 0);
    } finally {
      h.app.server.closeAllConnections();
    }
  });
});

describe("tgi_compat on the real tiny model", () => {
  const h = realHarness({ OPTION_TGI_COMPAT: "true" });
  after(async () => {
    await h.registry.closeAll();
  });
  it("array-wrapped json and SSE stream by default", async () => {
    await h.registry.register({ name: "tiny", url: MODEL, modelDir: MODEL, overrides: {} }).ready;
    const a = await h.app.inject({
      method: "POST",
      url: "/invocations",
      headers: json,
      payload: { inputs: "In the", parameters: { max_new_tokens: 3 } },
    });
    const body = JSON.parse(a.body);
    assert.ok(Array.isArray(body));
    assert.equal(body[0].details.tokens.length, 3);
    assert.equal(typeof body[0].details.tokens[0].logprob, "number");
    const s = await h.app.inject({
      method: "POST",
      url: "/invocations",
      headers: json,
      payload: { inputs: "In the", parameters: { max_new_tokens: 3 }, stream: true },
    });
    assert.equal(s.headers["content-type"], "text/event-stream");
    const events = s.body.split("\n\n").filter((e) => e);
    assert.equal(events.length, 3);
    assert.equal(JSON.parse(events[2].slice(6)).generated_text, body[0].generated_text);
  });
});

describe("rolling_batch=scheduler (padded sub-batches) on the real tiny model", () => {
  const paged = realHarness();
  const padded = realHarness({ OPTION_ROLLING_BATCH: "scheduler" });
  after(async () => {
    await paged.registry.closeAll();
    await padded.registry.closeAll();
  });
  it("serves through the padded engine and agrees with the paged engine under greedy decoding", async () => {
    await paged.registry.register({ name: "tiny", url: MODEL, modelDir: MODEL, overrides: {} }).ready;
    await padded.registry.register({ name: "tiny", url: MODEL, modelDir: MODEL, overrides: {} }).ready;
    assert.equal(padded.registry.get("tiny").options.rollingBatch, "scheduler");
    const body = { inputs: "In the beginning", parameters: { max_new_tokens: 8, do_sample: false } };
    const a = await paged.app.inject({ method: "POST", url: "/invocations", headers: json, payload: body });
    const b = await padded.app.inject({ method: "POST", url: "/invocations", headers: json, payload: body });
    assert.equal(b.statusCode, 200, b.body);
    assert.equal(JSON.parse(b.body).generated_text, JSON.parse(a.body).generated_text);
  });
});
