// The streamed OpenAI chunks of plain tokens are written from precomputed strings (stringChunkFrame): byte for byte
// what JSON.stringify of the chunk object gives, for every framing and option that takes that path.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { RequestOutput } from "../../engine/protocol.ts";
import { createChatFormatter, createCompletionFormatter } from "./openai-format.ts";
import type { FormatContext } from "./types.ts";

const TEXTS = [" In", ' "quoted"', " back\\slash", "\nnew line\t", " é 😀", "\u0001\u2028", ""];

function ctxOf(over: Partial<FormatContext>): FormatContext {
  return {
    requestId: "r",
    inputs: "In the beginning",
    details: false,
    decoderInputDetails: false,
    topNTokens: 0,
    returnFullText: false,
    tgiCompat: false,
    model: 'm "x"',
    includeUsage: false,
    logprobs: false,
    ...over,
  };
}

function deltas(): RequestOutput[] {
  const outs: RequestOutput[] = TEXTS.map((t, i) => ({
    requestId: "r",
    tokens: [{ id: i + 1, text: t, logprob: -0.5, special: false }],
    textDelta: t,
    finished: false,
  }));
  outs.push({
    requestId: "r",
    tokens: [{ id: 9, text: "!", logprob: -0.1, special: false }],
    textDelta: "!",
    finished: true,
    finishReason: "length",
    generatedText: TEXTS.join("") + "!",
    numPromptTokens: 4,
    numGeneratedTokens: TEXTS.length + 1,
  });
  return outs;
}

/** The JSON of a token's chunk object as the object path builds it: keys in this order. */
function chunkJson(
  first: { id: string; created: number },
  object: string,
  choice: object,
  includeUsage: boolean,
) {
  return JSON.stringify({
    id: first.id,
    object,
    created: first.created,
    model: 'm "x"',
    choices: [{ index: 0, ...choice, logprobs: null, finish_reason: null }],
    ...(includeUsage ? { usage: null } : {}),
  });
}

describe("streamed OpenAI chunks", () => {
  for (const includeUsage of [false, true]) {
    it(`completions: token chunks are the objects' JSON, include_usage=${includeUsage}`, () => {
      const f = createCompletionFormatter(true, ctxOf({ includeUsage }));
      const frames = deltas().map((d) => f.delta(d));
      const first = JSON.parse(frames[0].slice(6, -2));
      for (const [i, frame] of frames.slice(0, TEXTS.length).entries()) {
        const want = chunkJson(first, "text_completion", { text: TEXTS[i] }, includeUsage);
        assert.equal(frame, `data: ${want}\n\n`);
      }
      assert.ok(frames.at(-1)!.endsWith("data: [DONE]\n\n"));
    });

    for (const name of ["sse_chat", "jsonlines_chat"] as const) {
      it(`${name}: token chunks are the objects' JSON, include_usage=${includeUsage}`, () => {
        const sse = name === "sse_chat";
        const f = createChatFormatter(name, true, ctxOf({ includeUsage }));
        const frames = deltas().map((d) => f.delta(d));
        const first = JSON.parse(sse ? frames[0].slice(6, -2) : frames[0].slice(0, -1));
        assert.equal(first.choices[0].delta.role, "assistant");
        for (const [i, frame] of frames.slice(1, TEXTS.length).entries()) {
          const json = chunkJson(
            first,
            "chat.completion.chunk",
            { delta: { content: TEXTS[i + 1] } },
            includeUsage,
          );
          assert.equal(frame, sse ? `data: ${json}\n\n` : `${json}\n`);
        }
      });
    }
  }

  it("chunks with logprobs or a finish reason still carry them", () => {
    const f = createChatFormatter("sse_chat", true, ctxOf({ logprobs: true }));
    const frames = deltas().map((d) => f.delta(d));
    const mid = JSON.parse(frames[2].slice(6, -2));
    assert.equal(mid.choices[0].logprobs.content[0].logprob, -0.5);
    const last = JSON.parse(frames.at(-1)!.split("\n\n")[0].slice(6));
    assert.equal(last.choices[0].finish_reason, "length");
  });
});
