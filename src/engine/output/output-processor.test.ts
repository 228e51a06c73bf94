import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { byteBpe } from "../../../test/engine/fixtures.ts";
import type { GenerationParams, RequestOutput } from "../protocol.ts";
import { validateParameters } from "../sampling-params.ts";
import type { EngineCoreOutput } from "../scheduler/scheduler.ts";
import { RequestState } from "./output-processor.ts";

function params(raw: Record<string, unknown> = {}): GenerationParams {
  return validateParameters(raw).params;
}

function core(ids: number[], extra: Partial<EngineCoreOutput> = {}): EngineCoreOutput {
  return {
    reqId: "r",
    newTokenIds: ids,
    newLogprobs: ids.map((_, i) => ({ logprob: -0.25 * (i + 1), top: [] })),
    newPromptLogprobs: null,
    promptLogprobsStart: 0,
    finishReason: null,
    numCachedTokens: 0,
    ...extra,
  };
}

/** Feeds text's tokens one per step, like a decode loop; the last step carries finishReason. */
function run(
  text: string,
  p: GenerationParams,
  finishReason: EngineCoreOutput["finishReason"] = "length",
): { outs: RequestOutput[]; stoppedAt: number } {
  const tok = byteBpe();
  const state = new RequestState(
    { requestId: "r", promptTokenIds: tok.encode("Hi"), params: p, seed: 5 },
    tok,
  );
  const ids = tok.encode(text, false);
  const outs: RequestOutput[] = [];
  let stoppedAt = -1;
  for (let i = 0; i < ids.length && !state.finished; i++) {
    const { output, stopped } = state.process(
      core([ids[i]], { finishReason: i === ids.length - 1 ? finishReason : null }),
    );
    outs.push(output);
    if (stopped) stoppedAt = i;
  }
  return { outs, stoppedAt };
}

describe("RequestState (output processing)", () => {
  it("streams text deltas that add up to the generated text, with a summary on the last delta", () => {
    const { outs } = run("Hello the world 😀", params());
    const last = outs.at(-1)!;
    assert.equal(outs.map((o) => o.textDelta).join(""), "Hello the world 😀");
    assert.equal(last.finished, true);
    assert.equal(last.finishReason, "length");
    assert.equal(last.generatedText, "Hello the world 😀");
    assert.equal(last.numGeneratedTokens, outs.length);
    assert.equal(last.numPromptTokens, 3, "<s> H i");
    assert.equal(last.seed, 5);
    for (const o of outs.slice(0, -1)) assert.equal(o.finished, false);
    for (const o of outs) assert.ok(!o.textDelta.includes("\uFFFD"));
    assert.equal(outs[0].tokens[0].logprob, -0.25);
  });

  it("stops at a stop sequence spanning tokens, cuts it from the text and reports it once", () => {
    const { outs, stoppedAt } = run("Hello the world and more", params({ stop: ["e w"] }));
    const last = outs.at(-1)!;
    assert.equal(last.finishReason, "stop_sequence");
    assert.equal(last.generatedText, "Hello th");
    assert.equal(outs.map((o) => o.textDelta).join(""), "Hello th");
    assert.equal(stoppedAt, outs.length - 1, "stopped=true on the delta that found it");
    for (const o of outs) assert.ok(!o.textDelta.includes("e w"));
    // Hello | Ġthe | Ġworld: the stop completes on the third token; the rest never arrives.
    assert.equal(outs.length, 3);
  });

  it("holds back a possible stop prefix while streaming, then releases it when no stop follows", () => {
    const { outs } = run("Hello the world", params({ stop: ["world peace"] }));
    const early = outs
      .slice(0, -1)
      .map((o) => o.textDelta)
      .join("");
    assert.ok("Hello the world".startsWith(early));
    assert.ok(early.length <= "Hello the world".length - 10, "the last 10 chars may start 'world peace'");
    assert.equal(outs.map((o) => o.textDelta).join(""), "Hello the world");
    assert.equal(outs.at(-1)!.finishReason, "length");
  });

  it("does not stop on a stop sequence before min_new_tokens", () => {
    // Tokens: Hello | Ġthe | Ġworld | Ġand; "the" completes on token 2, "and" on token 4.
    const early = run("Hello the world and more", params({ stop: ["the", "and"], min_new_tokens: 2 }));
    assert.equal(early.outs.at(-1)!.generatedText, "Hello the world ");
    const none = run("Hello the world and more", params({ stop: ["the", "and"] }));
    assert.equal(none.outs.at(-1)!.generatedText, "Hello ");
  });

  it("keeps the stop sequence with include_stop_str_in_output", () => {
    const { outs } = run(
      "Hello the world and more",
      params({ stop: ["the"], include_stop_str_in_output: true }),
    );
    assert.equal(outs.at(-1)!.generatedText, "Hello the");
  });

  it("returns top alternatives with text, and prompt logprobs by absolute position", () => {
    const tok = byteBpe();
    const prompt = tok.encode("Hello the world");
    const state = new RequestState(
      {
        requestId: "r",
        promptTokenIds: prompt,
        params: params({ top_n_tokens: 1, decoder_input_details: true }),
        seed: 1,
      },
      tok,
    );
    const hello = tok.tokenToId("Hello")!;
    const the = tok.tokenToId("Ġthe")!;
    // Chunked prefill: positions 0-1 score tokens 1-2 (plus null for token 0), positions 2-3 score token 3;
    // the second chunk arrives twice, as after a preemption and recomputation.
    const lp = (x: number) => ({ logprob: x, top: [] });
    state.process(core([], { newPromptLogprobs: [null, lp(-1), lp(-2)], promptLogprobsStart: 0 }));
    state.process(core([], { newPromptLogprobs: [lp(-3)], promptLogprobsStart: 2 }));
    state.process(core([], { newPromptLogprobs: [lp(-3)], promptLogprobsStart: 2 }));
    const { output } = state.process({
      ...core([the]),
      newLogprobs: [
        {
          logprob: -0.1,
          top: [
            [hello, -0.05],
            [the, -0.1],
          ],
        },
      ],
      finishReason: "eos_token",
    });
    assert.deepEqual(output.tokens[0].top, [{ id: hello, text: "Hello", logprob: -0.05, special: false }]);
    assert.deepEqual(
      output.prefill!.map((p) => p.logprob),
      [null, -1, -2, -3],
    );
    assert.equal(output.prefill![0].text, "<s>");
  });

  it("finish() ends a request from outside with the text so far and an error message", () => {
    const tok = byteBpe();
    const state = new RequestState({ requestId: "r", promptTokenIds: [1], params: params(), seed: 1 }, tok);
    state.process(core(tok.encode("Hello", false)));
    const out = state.finish("error", "executor died");
    assert.equal(out.finishReason, "error");
    assert.equal(out.error, "executor died");
    assert.equal(out.generatedText, "Hello");
    assert.ok(state.finished);
  });
});
