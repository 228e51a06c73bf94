import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { harness } from "./harness.ts";
import { addModel, ScriptedEngine, scriptedModel } from "./scripted-engine.ts";

const words = [" In", " the", " beginning"];
const json = { "content-type": "application/json" };

async function setup() {
  const engine = new ScriptedEngine({ words });
  const h = harness(async () => scriptedModel(engine));
  await addModel(h.registry, "tiny");
  return { ...h, engine };
}

const messages = [{ role: "user", content: "Who made the heaven?" }];

describe("chat completions (spec §3.7)", () => {
  it("non-streaming chat.completion with usage and logprobs; prompt built by the chat template", async () => {
    const { app, engine } = await setup();
    const res = await app.inject({
      method: "POST",
      url: "/v1/chat/completions",
      headers: json,
      payload: { model: "tiny", messages, max_tokens: 2, logprobs: true, top_logprobs: 1 },
    });
    assert.equal(res.statusCode, 200);
    const b = JSON.parse(res.body);
    assert.equal(b.object, "chat.completion");
    assert.match(b.id, /^chatcmpl-/);
    assert.deepEqual(b.choices[0].message, { role: "assistant", content: " In the" });
    assert.equal(b.choices[0].finish_reason, "length");
    assert.equal(b.choices[0].logprobs.content[0].token, " In");
    assert.equal(b.choices[0].logprobs.content[0].top_logprobs.length, 1);
    const prompt = engine.requests[0].prompt as { tokenIds: number[] };
    assert.deepEqual(prompt.tokenIds, engine.encode("<user>Who made the heaven?<assistant>"));
    assert.deepEqual(b.usage, {
      prompt_tokens: prompt.tokenIds.length,
      completion_tokens: 2,
      total_tokens: prompt.tokenIds.length + 2,
    });
  });

  it("streaming: SSE chunks, role first, finish_reason last, usage chunk, data: [DONE]", async () => {
    const { app } = await setup();
    const res = await app.inject({
      method: "POST",
      url: "/v1/chat/completions",
      headers: json,
      payload: { messages, stream: true, stream_options: { include_usage: true } },
    });
    assert.equal(res.headers["content-type"], "text/event-stream");
    const events = res.body.split("\n\n").filter((e) => e);
    assert.equal(events.at(-1), "data: [DONE]");
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e.slice(6)));
    assert.equal(chunks.length, 4);
    assert.deepEqual(chunks[0].choices[0].delta, { content: " In", role: "assistant" });
    assert.equal(chunks[0].choices[0].finish_reason, null);
    assert.equal(chunks[2].choices[0].finish_reason, "length");
    assert.deepEqual(chunks[3].choices, []);
    assert.equal(chunks[3].usage.completion_tokens, 3);
    assert.ok(chunks.every((c) => c.object === "chat.completion.chunk"));
  });

  it("messages on /invocations: json_chat, and jsonlines_chat when streaming", async () => {
    const { app } = await setup();
    const a = JSON.parse(
      (await app.inject({ method: "POST", url: "/invocations", headers: json, payload: { messages } })).body,
    );
    assert.equal(a.object, "chat.completion");
    const b = await app.inject({
      method: "POST",
      url: "/invocations",
      headers: json,
      payload: { messages, stream: true },
    });
    assert.equal(b.headers["content-type"], "application/jsonlines");
    const lines = b.body
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l));
    assert.equal(lines.length, 3);
    assert.equal(lines[2].choices[0].finish_reason, "length");
  });

  it("bad OpenAI fields -> 400 OpenAI error naming the field; on /invocations -> 424", async () => {
    const { app } = await setup();
    const cases: Array<[unknown, string]> = [
      [{ messages: [] }, "messages"],
      [{ messages, temperature: 3 }, "temperature"],
      [{ messages, n: 2 }, "n"],
      [{ messages, top_logprobs: 2 }, "top_logprobs"],
      [{ messages, stop: 5 }, "stop"],
    ];
    for (const [body, field] of cases) {
      const res = await app.inject({
        method: "POST",
        url: "/v1/chat/completions",
        headers: json,
        payload: body as object,
      });
      assert.equal(res.statusCode, 400, field);
      const e = JSON.parse(res.body).error;
      assert.equal(e.param, field);
      assert.equal(e.type, "invalid_request_error");
      assert.match(e.message, new RegExp(field));
    }
    const lmi = await app.inject({
      method: "POST",
      url: "/invocations",
      headers: json,
      payload: { messages, temperature: 3 },
    });
    assert.equal(lmi.statusCode, 424);
    assert.match(JSON.parse(lmi.body).error, /temperature/);
  });
});

describe("completions", () => {
  it("text_completion, echo, logprobs, and SSE streaming with [DONE]", async () => {
    const { app } = await setup();
    const a = JSON.parse(
      (
        await app.inject({
          method: "POST",
          url: "/v1/completions",
          headers: json,
          payload: { prompt: "Light", max_tokens: 2, echo: true, logprobs: 1 },
        })
      ).body,
    );
    assert.equal(a.object, "text_completion");
    assert.equal(a.choices[0].text, "Light In the");
    assert.deepEqual(a.choices[0].logprobs.tokens, [" In", " the"]);
    assert.deepEqual(a.choices[0].logprobs.text_offset, [5, 8]);
    assert.equal(a.usage.completion_tokens, 2);
    const b = await app.inject({
      method: "POST",
      url: "/v1/completions",
      headers: json,
      payload: { prompt: "Light", stream: true },
    });
    const events = b.body.split("\n\n").filter((e) => e);
    assert.equal(events.at(-1), "data: [DONE]");
    assert.equal(
      events
        .slice(0, -1)
        .map((e) => JSON.parse(e.slice(6)).choices[0].text)
        .join(""),
      " In the beginning",
    );
  });

  it("a token-id prompt is decoded for echo only, not on every request", async () => {
    const { app, engine } = await setup();
    const decode = engine.decode.bind(engine);
    let decoded = 0;
    engine.decode = (ids: number[]) => {
      decoded++;
      return decode(ids);
    };
    const ids = [40, 41, 42];
    const plain = await app.inject({
      method: "POST",
      url: "/v1/completions",
      headers: json,
      payload: { prompt: ids, max_tokens: 2 },
    });
    assert.equal(JSON.parse(plain.body).choices[0].text, " In the");
    assert.deepEqual((engine.requests[0].prompt as { tokenIds: number[] }).tokenIds, ids);
    assert.equal(decoded, 0);
    for (const stream of [false, true]) {
      const res = await app.inject({
        method: "POST",
        url: "/v1/completions",
        headers: json,
        payload: { prompt: ids, max_tokens: 2, echo: true, stream },
      });
      const text = stream
        ? res.body
            .split("\n\n")
            .filter((e) => e && e !== "data: [DONE]")
            .map((e) => JSON.parse(e.slice(6)).choices[0]?.text ?? "")
            .join("")
        : JSON.parse(res.body).choices[0].text;
      assert.equal(text, `${decode(ids)} In the`);
    }
    assert.equal(decoded, 2);
  });

  it("a `prompt` body on /invocations is a completions request", async () => {
    const { app } = await setup();
    const a = JSON.parse(
      (await app.inject({ method: "POST", url: "/invocations", headers: json, payload: { prompt: "Light" } }))
        .body,
    );
    assert.equal(a.object, "text_completion");
  });

  it("bad prompt -> 400 naming prompt", async () => {
    const { app } = await setup();
    const res = await app.inject({
      method: "POST",
      url: "/v1/completions",
      headers: json,
      payload: { prompt: ["a", "b"] },
    });
    assert.equal(res.statusCode, 400);
    assert.equal(JSON.parse(res.body).error.param, "prompt");
  });
});
