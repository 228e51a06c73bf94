import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { BYTE_BPE_DIR, byteBpe } from "../../test/engine/fixtures.ts";
import { ConfigError, ValidationError } from "../errors.ts";
import { HfTokenizer } from "./tokenizer.ts";

describe("HfTokenizer", () => {
  it("encodes with the post-processor's bos and round-trips text, multi-byte characters included", () => {
    const tok = byteBpe();
    const ids = tok.encode("Hello the world é 😀");
    assert.equal(ids[0], tok.bosTokenId);
    assert.equal(tok.idToToken(ids[1]), "Hello");
    assert.equal(tok.decode(ids, true), "Hello the world é 😀");
    assert.equal(tok.decode(ids, false), "<s>Hello the world é 😀");
    assert.deepEqual(tok.encode("Hello", false), [tok.tokenToId("Hello")]);
  });

  it("collects eos ids from tokenizer_config and generation_config, and marks special tokens", () => {
    const tok = byteBpe();
    const imEnd = tok.tokenToId("<|im_end|>")!;
    const eos = tok.tokenToId("</s>")!;
    assert.deepEqual([...tok.eosTokenIds].sort(), [eos, imEnd].sort());
    assert.equal(tok.eosToken, "<|im_end|>");
    assert.equal(tok.bosToken, "<s>");
    assert.ok(tok.isSpecial(imEnd));
    assert.ok(!tok.isSpecial(tok.tokenToId("Hello")!));
    assert.equal(tok.vocabSize, 279);
  });

  it("fails with a clear error when tokenizer.json is missing", () => {
    const dir = mkdtempSync(join(tmpdir(), "tok-"));
    assert.throws(
      () => HfTokenizer.fromDir(dir),
      (e: unknown) => e instanceof ConfigError && /tokenizer\.json/.test(e.message),
    );
  });

  it("reads eos_token_id from config.json when the tokenizer config names none", () => {
    const tok = new HfTokenizer({
      tokenizerJson: byteBpeJson(),
      tokenizerConfig: {},
      modelConfig: { eos_token_id: 275 },
    });
    assert.deepEqual(tok.eosTokenIds, [275]);
    assert.equal(tok.chatTemplate, null);
    assert.throws(
      () => tok.applyChatTemplate([{ role: "user", content: "hi" }]),
      (e: unknown) =>
        e instanceof ValidationError && e.field === "messages" && /no chat template/.test(e.message),
    );
  });
});

describe("chat templates", () => {
  it("renders messages with bos_token and the generation prompt", () => {
    const out = byteBpe().applyChatTemplate([
      { role: "system", content: "Be brief." },
      { role: "user", content: "Hi" },
    ]);
    assert.equal(
      out,
      "<s><|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    );
    const noGen = byteBpe().applyChatTemplate([{ role: "user", content: "Hi" }], {
      addGenerationPrompt: false,
    });
    assert.ok(!noGen.endsWith("assistant\n"));
  });

  it("passes tools to the template", () => {
    const out = byteBpe().applyChatTemplate([{ role: "user", content: "Hi" }], {
      tools: [{ type: "function", function: { name: "get_weather" } }],
    });
    assert.match(out, /<\|im_start\|>tools\nget_weather\n<\|im_end\|>/);
  });

  it("turns raise_exception into a ValidationError naming messages", () => {
    assert.throws(
      () => byteBpe().applyChatTemplate([{ role: "robot", content: "x" }]),
      (e: unknown) =>
        e instanceof ValidationError && e.field === "messages" && e.message === "Unknown role: robot",
    );
  });

  it("uses the tool_use entry of a named template list when tools are given, and reports a broken template on use", () => {
    const tok = new HfTokenizer({
      tokenizerJson: byteBpeJson(),
      tokenizerConfig: {
        bos_token: "<s>",
        chat_template: [
          { name: "default", template: "D{{ messages[0].content }}" },
          { name: "tool_use", template: "T{{ tools | length }}" },
        ],
      },
    });
    assert.equal(tok.applyChatTemplate([{ role: "user", content: "x" }]), "Dx");
    assert.equal(tok.applyChatTemplate([{ role: "user", content: "x" }], { tools: [{}, {}] }), "T2");
    const broken = new HfTokenizer({
      tokenizerJson: byteBpeJson(),
      tokenizerConfig: { chat_template: "{% if %}" },
    });
    assert.throws(
      () => broken.applyChatTemplate([{ role: "user", content: "x" }]),
      (e: unknown) => e instanceof ValidationError && /cannot be parsed/.test(e.message),
    );
  });
});

function byteBpeJson(): Record<string, unknown> {
  return JSON.parse(readFileSync(join(BYTE_BPE_DIR, "tokenizer.json"), "utf8"));
}
