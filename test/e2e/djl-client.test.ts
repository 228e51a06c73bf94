// The black-box checks of DJL's tests/integration/llm/client.py (spec §7.2), re-implemented in TS and
// run against a real `lmi serve` process (paged engine + CPU executor + the tiny model): response
// checker, rolling-batch requests (plain and streaming) with a small concurrent load, chat requests,
// worker count, input too long -> 424 in under 20 s, greedy determinism with a seed.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type ServeProcess, startServe, testModelDir } from "./serve-process.ts";

const PROMPTS = [
  "DeepSpeed is a machine learning framework",
  "He is working on",
  "He has a",
  "He got all",
  "Everyone is happy and I can",
  "The new movie that got Oscar this year",
  "In the far far distance from our galaxy,",
  "Peace is the only way",
];

/** client.py's response_checker: fails on finish_reason "error" or a code other than 200. */
function responseChecker(contentType: string, text: string): void {
  const bad = (o: Record<string, unknown>) => {
    const details = o.details as { finish_reason?: string } | undefined;
    assert.notEqual(details?.finish_reason, "error", `error finish in ${JSON.stringify(o)}`);
    if (o.code !== undefined) assert.equal(o.code, 200, `code in ${JSON.stringify(o)}`);
  };
  if (contentType.startsWith("application/json")) {
    bad(JSON.parse(text.split("\n")[0]));
  } else if (contentType.startsWith("application/jsonlines")) {
    const lines = text
      .split("\n")
      .filter((l) => l.trim() !== "")
      .map((l) => JSON.parse(l.replace(/^data: /, "")));
    assert.ok(lines.length > 0);
    bad(lines[lines.length - 1]);
  }
}

/** client.py's extract_generated_text: the last line holding generated_text. */
function extractGeneratedText(text: string): string {
  const lines = text.split("\n").filter((l) => l.trim() !== "");
  for (let i = lines.length - 1; i >= 0; i--) {
    const o = JSON.parse(lines[i].replace(/^data: /, ""));
    const item = Array.isArray(o) ? o[0] : o;
    if (item && typeof item.generated_text === "string") return item.generated_text;
  }
  throw new Error(`no generated_text in ${text}`);
}

describe("DJL client.py checks against lmi serve (spec §7.2)", () => {
  let server: ServeProcess;
  const post = (body: unknown, path = "/invocations") =>
    fetch(`${server.url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });

  before(async () => {
    server = await startServe([testModelDir()]);
  });
  after(async () => {
    await server?.stop();
  });

  it("check_worker_number(1): GET /models then GET /models/<name>", async () => {
    const list = (await (await fetch(`${server.url}/models`)).json()) as {
      models: Array<{ modelName: string }>;
    };
    const name = list.models[0].modelName;
    const res = (await (await fetch(`${server.url}/models/${name}`)).json()) as Array<{
      models: Array<{ workerGroups: Array<{ workers: unknown[] }> }>;
    }>;
    const groups = res[0].models[0].workerGroups;
    assert.ok(groups.length === 1 || groups[0].workers.length === 1);
  });

  for (const stream of [false, true]) {
    it(`test_handler_rolling_batch (stream=${stream}) + a concurrent load of 4 x 5 requests`, async () => {
      const L = 16;
      const res = await post({
        inputs: PROMPTS[0],
        parameters: { do_sample: true, max_new_tokens: L, details: true },
        stream,
      });
      assert.equal(res.status, 200);
      const ct = res.headers.get("content-type") ?? "";
      assert.equal(ct.split(";")[0], stream ? "application/jsonlines" : "application/json");
      const text = await res.text();
      responseChecker(ct, text);
      assert.ok(extractGeneratedText(text).length > 0);
      if (stream) assert.ok(text.trimEnd().split("\n").length <= L);
      // awscurl -c 4 -N 5: four clients, five sequential requests each.
      const results = await Promise.all(
        Array.from({ length: 4 }, async (_, c) => {
          let ok = 0;
          for (let n = 0; n < 5; n++) {
            const r = await post({
              inputs: PROMPTS[(c + n) % PROMPTS.length],
              parameters: { do_sample: true, max_new_tokens: L, details: true },
              stream,
            });
            const t = await r.text();
            if (r.status === 200) {
              responseChecker(r.headers.get("content-type") ?? "", t);
              ok++;
            }
          }
          return ok;
        }),
      );
      assert.deepEqual(results, [5, 5, 5, 5]);
    });
  }

  for (const stream of [false, true]) {
    it(`test_handler_rolling_batch_chat (stream=${stream})`, async () => {
      const res = await post({
        messages: [{ role: "user", content: "What is Deep Learning?" }],
        max_tokens: 12,
        logprobs: true,
        top_logprobs: 1,
        stream,
      });
      assert.equal(res.status, 200);
      const text = await res.text();
      if (!stream) {
        const o = JSON.parse(text);
        assert.equal(o.object, "chat.completion");
        assert.equal(typeof o.choices[0].message.content, "string");
        assert.equal(o.choices[0].logprobs.content[0].top_logprobs.length, 1);
        assert.equal(o.usage.completion_tokens, o.choices[0].logprobs.content.length);
      } else {
        assert.equal(res.headers.get("content-type"), "application/jsonlines");
        const chunks = text
          .trimEnd()
          .split("\n")
          .map((l) => JSON.parse(l));
        assert.ok(chunks.every((c) => c.object === "chat.completion.chunk"));
        assert.equal(chunks[0].choices[0].delta.role, "assistant");
        assert.notEqual(chunks.at(-1).choices[0].finish_reason, null);
      }
    });
  }

  it("input too long -> 424 in under 20 s, and a short prompt still succeeds", async () => {
    const t0 = Date.now();
    const res = await post({
      inputs: "In the beginning God created the heaven and the earth. ".repeat(400),
      parameters: { max_new_tokens: 8 },
    });
    const elapsed = Date.now() - t0;
    assert.equal(res.status, 424);
    const body = (await res.json()) as { code: number; message: string };
    assert.equal(body.code, 424);
    assert.match(body.message, /tokens/);
    assert.ok(elapsed < 20_000, `took ${elapsed} ms`);
    assert.ok(elapsed < 1_000, `took ${elapsed} ms (we promise under a second)`);
    const ok = await post({ inputs: PROMPTS[1], parameters: { max_new_tokens: 4 } });
    assert.equal(ok.status, 200);
  });

  it("greedy with a seed is deterministic across runs (and across streaming)", async () => {
    const params = {
      do_sample: false,
      temperature: 0.0,
      top_p: 1.0,
      top_k: -1,
      seed: 42,
      max_new_tokens: 16,
      details: true,
    };
    const a = extractGeneratedText(await (await post({ inputs: PROMPTS[2], parameters: params })).text());
    const b = extractGeneratedText(await (await post({ inputs: PROMPTS[2], parameters: params })).text());
    const c = extractGeneratedText(
      await (await post({ inputs: PROMPTS[2], parameters: params, stream: true })).text(),
    );
    assert.equal(a, b);
    assert.equal(a, c);
    assert.ok(a.length > 0);
    // Sampling with the same seed is reproducible too.
    const s = { do_sample: true, temperature: 1.0, seed: 7, max_new_tokens: 16 };
    const s1 = extractGeneratedText(await (await post({ inputs: PROMPTS[3], parameters: s })).text());
    const s2 = extractGeneratedText(await (await post({ inputs: PROMPTS[3], parameters: s })).text());
    assert.equal(s1, s2);
  });
});
