import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ValidationError } from "../errors.ts";
import { validateParameters } from "./sampling-params.ts";

function rejects(raw: unknown, field: string, message: RegExp | string): void {
  assert.throws(
    () => validateParameters(raw),
    (err: unknown) => {
      assert.ok(err instanceof ValidationError, `expected ValidationError, got ${err}`);
      assert.equal(err.field, field);
      assert.equal(err.status, 400);
      if (typeof message === "string") assert.equal(err.message, message);
      else assert.match(err.message, message);
      return true;
    },
  );
}

describe("validateParameters defaults", () => {
  it("fills the LMI rolling-batch defaults", () => {
    const { params, warnings } = validateParameters({});
    assert.deepEqual(warnings, []);
    assert.equal(params.maxNewTokens, 30);
    assert.equal(params.strategy, "greedy");
    assert.equal(params.temperature, 1);
    assert.equal(params.topK, 0);
    assert.equal(params.topP, 1);
    assert.equal(params.typicalP, 1);
    assert.equal(params.repetitionPenalty, 1);
    assert.equal(params.seed, null);
    assert.deepEqual(params.stopSequences, []);
    assert.equal(params.details, false);
    assert.equal(params.returnFullText, false);
    assert.equal(params.skipSpecialTokens, true);
    assert.equal(params.truncate, null);
  });

  it("uses the server defaults for strategy and max_new_tokens", () => {
    const { params } = validateParameters(undefined, { strategy: "sample", maxNewTokens: 64 });
    assert.equal(params.strategy, "sample");
    assert.equal(params.maxNewTokens, 64);
  });
});

describe("validateParameters strategy", () => {
  it("do_sample=true forces sample, even over decoding_strategy", () => {
    assert.equal(validateParameters({ do_sample: true }).params.strategy, "sample");
    assert.equal(
      validateParameters({ do_sample: true, decoding_strategy: "greedy" }).params.strategy,
      "sample",
    );
  });

  it("do_sample=false is greedy unless decoding_strategy says otherwise", () => {
    assert.equal(validateParameters({ do_sample: false }, { strategy: "sample" }).params.strategy, "greedy");
    assert.equal(
      validateParameters({ do_sample: false, decoding_strategy: "contrastive" }).params.strategy,
      "contrastive",
    );
  });

  it("temperature 0 means greedy, with a warning when sampling was asked for", () => {
    const { params, warnings } = validateParameters({ do_sample: true, temperature: 0 });
    assert.equal(params.strategy, "greedy");
    assert.match(warnings[0], /temperature/);
  });

  it("contrastive search defaults to top_k 4 and penalty_alpha 0.6 and needs top_k >= 1", () => {
    const { params } = validateParameters({ decoding_strategy: "contrastive" });
    assert.equal(params.topK, 4);
    assert.equal(params.penaltyAlpha, 0.6);
    const custom = validateParameters({
      decoding_strategy: "contrastive",
      top_k: 6,
      penalty_alpha: 0.3,
    }).params;
    assert.equal(custom.topK, 6);
    assert.equal(custom.penaltyAlpha, 0.3);
    rejects({ decoding_strategy: "contrastive", top_k: 0 }, "top_k", /contrastive/);
    rejects({ decoding_strategy: "beam" }, "decoding_strategy", /one of greedy, sample, contrastive/);
    rejects({ penalty_alpha: 1.5 }, "penalty_alpha", "`penalty_alpha` must be >= 0.0 and <= 1.0, got 1.5");
  });
});

describe("validateParameters errors name the field", () => {
  it("rejects out-of-range numbers with TGI-style messages", () => {
    rejects({ top_p: 1.5 }, "top_p", "`top_p` must be > 0.0 and <= 1.0, got 1.5");
    rejects({ top_p: 0 }, "top_p", "`top_p` must be > 0.0 and <= 1.0, got 0");
    rejects({ typical_p: 0 }, "typical_p", /> 0.0 and <= 1.0/);
    rejects({ temperature: -1 }, "temperature", /must be >= 0.0/);
    rejects({ repetition_penalty: 0 }, "repetition_penalty", /must be > 0.0/);
    rejects({ presence_penalty: 3 }, "presence_penalty", /must be >= -2.0 and <= 2.0, got 3/);
    rejects({ frequency_penalty: -2.5 }, "frequency_penalty", /-2.0/);
    rejects({ min_p: 2 }, "min_p", /<= 1.0/);
  });

  it("rejects wrong types", () => {
    rejects({ max_new_tokens: 0 }, "max_new_tokens", "`max_new_tokens` must be >= 1, got 0");
    rejects({ max_new_tokens: 2.5 }, "max_new_tokens", /must be an integer, got 2.5/);
    rejects({ max_new_tokens: "10" }, "max_new_tokens", /must be an integer, got "10"/);
    rejects({ temperature: "hot" }, "temperature", /must be a number/);
    rejects({ do_sample: "yes" }, "do_sample", /true or false/);
    rejects({ seed: -1 }, "seed", />= 0/);
    rejects({ top_n_tokens: 21 }, "top_n_tokens", /<= 20/);
    rejects({ stop_sequences: [1] }, "stop_sequences", /list of strings/);
    rejects({ stop: [""] }, "stop", /empty/);
    rejects({ stop_token_ids: [-1] }, "stop_token_ids", /non-negative integers/);
    rejects({ truncate: 0 }, "truncate", />= 1/);
    rejects({ logit_bias: { abc: 1 } }, "logit_bias", /token ids/);
    rejects({ logit_bias: { 5: 200 } }, "logit_bias", /-100/);
    rejects({ min_new_tokens: 40, max_new_tokens: 10 }, "min_new_tokens", /<= `max_new_tokens`/);
    rejects({ n: 2 }, "n", /not supported/);
    rejects([1, 2], "parameters", /JSON object/);
  });
});

describe("validateParameters values", () => {
  it("maps every accepted name", () => {
    const { params, warnings } = validateParameters({
      max_new_tokens: 5,
      do_sample: true,
      temperature: 0.7,
      top_k: -1,
      top_p: 0.9,
      typical_p: 0.95,
      min_p: 0.05,
      repetition_penalty: 1.2,
      presence_penalty: 0.5,
      frequency_penalty: -0.5,
      logit_bias: { "42": -100 },
      seed: 7,
      stop_sequences: ["\n\n"],
      stop: "END",
      stop_token_ids: [13],
      include_stop_str_in_output: true,
      ignore_eos: true,
      min_tokens: 2,
      details: true,
      decoder_input_details: true,
      top_n_tokens: 3,
      return_full_text: true,
      skip_special_tokens: false,
      truncate: 100,
      n: 1,
      stream: true,
    });
    assert.deepEqual(warnings, []);
    assert.deepEqual(params, {
      maxNewTokens: 5,
      strategy: "sample",
      temperature: 0.7,
      topK: 0,
      topP: 0.9,
      typicalP: 0.95,
      minP: 0.05,
      repetitionPenalty: 1.2,
      presencePenalty: 0.5,
      frequencyPenalty: -0.5,
      logitBias: { 42: -100 },
      seed: 7,
      stopSequences: ["\n\n", "END"],
      stopTokenIds: [13],
      includeStopStrInOutput: true,
      ignoreEos: true,
      minNewTokens: 2,
      details: true,
      decoderInputDetails: true,
      topNTokens: 3,
      returnFullText: true,
      penaltyAlpha: 0,
      skipSpecialTokens: false,
      truncate: 100,
    });
  });

  it("treats null as absent, maps vLLM logprobs/prompt_logprobs, and warns on unknown names", () => {
    const { params, warnings } = validateParameters({
      seed: null,
      logprobs: 2,
      prompt_logprobs: 1,
      frobnicate: 1,
      max_length: 3,
    });
    assert.equal(params.seed, null);
    assert.equal(params.topNTokens, 2);
    assert.equal(params.decoderInputDetails, true);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /frobnicate, max_length/);
  });
});
