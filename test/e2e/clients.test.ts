// Real clients against a real `lmi serve` (tiny model, paged engine, CPU executor), started with
// OPTION_TGI_COMPAT=true: the official `openai` npm client (chat and completions, plain and streaming,
// usage, logprobs) and `@huggingface/inference` (its text-generation task, which v4 always sends to
// <endpoint>/v1/completions, and its raw request/streamingRequest primitives, which post the TGI
// {"inputs","parameters"} body to /invocations and parse the TGI JSON / SSE answers as tgi_client.py does).

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { InferenceClient, request, streamingRequest } from "@huggingface/inference";
import OpenAI from "openai";
import { type ServeProcess, startServe, testModelDir } from "./serve-process.ts";

describe("real clients against lmi serve", () => {
  let server: ServeProcess;
  let openai: OpenAI;
  before(async () => {
    server = await startServe([testModelDir()], { OPTION_TGI_COMPAT: "true" });
    openai = new OpenAI({ apiKey: "unused", baseURL: `${server.url}/v1`, maxRetries: 0 });
  });
  after(async () => {
    await server?.stop();
  });

  it("openai: chat.completions.create, plain, with logprobs and usage", async () => {
    const r = await openai.chat.completions.create({
      model: "tiny",
      messages: [{ role: "user", content: "Who begat Enos?" }],
      max_tokens: 8,
      logprobs: true,
      top_logprobs: 2,
      seed: 1,
    });
    assert.equal(r.object, "chat.completion");
    assert.equal(r.choices[0].message.role, "assistant");
    assert.equal(typeof r.choices[0].message.content, "string");
    assert.ok(["length", "stop"].includes(r.choices[0].finish_reason));
    const lp = r.choices[0].logprobs?.content ?? [];
    assert.equal(lp.length, r.usage?.completion_tokens);
    assert.equal(lp[0].top_logprobs.length, 2);
    assert.equal(lp.map((t) => t.token).join(""), r.choices[0].message.content);
    assert.equal(r.usage?.total_tokens, (r.usage?.prompt_tokens ?? 0) + (r.usage?.completion_tokens ?? 0));
  });

  it("openai: chat streaming with include_usage ends with a usage chunk", async () => {
    const stream = await openai.chat.completions.create({
      model: "tiny",
      messages: [{ role: "user", content: "Who begat Enos?" }],
      max_tokens: 8,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | null | undefined = null;
    let n = 0;
    for await (const chunk of stream) {
      n++;
      if (chunk.usage) usage = chunk.usage;
      const c = chunk.choices[0];
      if (c) {
        text += c.delta.content ?? "";
        if (c.finish_reason) finish = c.finish_reason;
      }
    }
    assert.ok(n >= 2);
    assert.ok(finish !== null);
    assert.equal(usage?.completion_tokens, 8);
    assert.ok(text.length > 0);
  });

  it("openai: completions, plain (echo, logprobs) and streaming match under greedy decoding", async () => {
    const plain = await openai.completions.create({
      model: "tiny",
      prompt: "And God said",
      max_tokens: 10,
      temperature: 0,
      logprobs: 1,
    });
    assert.equal(plain.object, "text_completion");
    const text = plain.choices[0].text;
    assert.equal(plain.choices[0].logprobs?.tokens?.join(""), text);
    const echoed = await openai.completions.create({
      model: "tiny",
      prompt: "And God said",
      max_tokens: 10,
      temperature: 0,
      echo: true,
    });
    assert.equal(echoed.choices[0].text, `And God said${text}`);
    const stream = await openai.completions.create({
      model: "tiny",
      prompt: "And God said",
      max_tokens: 10,
      temperature: 0,
      stream: true,
    });
    let streamed = "";
    for await (const chunk of stream) streamed += chunk.choices[0]?.text ?? "";
    assert.equal(streamed, text);
  });

  it("openai: a bad request surfaces as APIError 400 with the field", async () => {
    await assert.rejects(
      openai.chat.completions.create({
        model: "tiny",
        messages: [{ role: "user", content: "x" }],
        temperature: 5,
      }),
      (err: unknown) =>
        err instanceof OpenAI.APIError && err.status === 400 && /temperature/.test(err.message),
    );
  });

  it("@huggingface/inference textGeneration and textGenerationStream (endpoint /v1)", async () => {
    const hf = new InferenceClient(undefined, { endpointUrl: `${server.url}/v1` });
    const r = await hf.textGeneration({
      inputs: "And God said",
      parameters: { max_new_tokens: 6, temperature: 0 },
    });
    assert.equal(typeof r.generated_text, "string");
    assert.ok(r.generated_text.length > 0);
    let streamed = "";
    let chunks = 0;
    for await (const o of hf.textGenerationStream({
      inputs: "And God said",
      parameters: { max_new_tokens: 6, temperature: 0 },
    })) {
      chunks++;
      const c = (o as unknown as { choices?: Array<{ text?: string }> }).choices?.[0];
      streamed += c?.text ?? "";
    }
    assert.ok(chunks >= 2);
    assert.equal(streamed, r.generated_text);
  });

  it("@huggingface/inference request/streamingRequest on /invocations with tgi_compat (tgi_client.py checks)", async () => {
    const endpointUrl = `${server.url}/invocations`;
    const out = (await request({
      endpointUrl,
      inputs: "And God said",
      parameters: { max_new_tokens: 6, details: true },
    })) as Array<{
      generated_text: string;
      details: {
        finish_reason: string;
        generated_tokens: number;
        tokens: Array<{ id: number; logprob: number; special: boolean }>;
      };
    }>;
    assert.ok(Array.isArray(out));
    assert.equal(typeof out[0].generated_text, "string");
    assert.equal(out[0].details.generated_tokens, 6);
    assert.ok(
      out[0].details.tokens.every(
        (t) => Number.isInteger(t.id) && typeof t.logprob === "number" && typeof t.special === "boolean",
      ),
    );
    const events: Array<{
      token: { id: number; logprob: number };
      generated_text: string | null;
      details: { finish_reason: string } | null;
    }> = [];
    for await (const e of streamingRequest({
      endpointUrl,
      inputs: "And God said",
      parameters: { max_new_tokens: 6, details: true },
      stream: true,
    })) {
      events.push(e as (typeof events)[number]);
    }
    assert.equal(events.length, 6);
    for (const e of events) {
      assert.ok(Number.isInteger(e.token.id));
      assert.equal(typeof e.token.logprob, "number");
    }
    const last = events.at(-1)!;
    assert.equal(last.generated_text, out[0].generated_text);
    assert.equal(last.details?.finish_reason, "length");
    assert.ok(events.slice(0, -1).every((e) => e.generated_text === null && e.details === null));
  });
});
