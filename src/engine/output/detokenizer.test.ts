import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { byteBpe } from "../../../test/engine/fixtures.ts";
import { IncrementalDetokenizer } from "./detokenizer.ts";

function stream(text: string, promptText = "Hello"): string[] {
  const tok = byteBpe();
  const prompt = tok.encode(promptText);
  const ids = tok.encode(text, false);
  const d = new IncrementalDetokenizer((x) => tok.decode(x, true), prompt);
  return ids.map((id) => d.push(id));
}

describe("IncrementalDetokenizer", () => {
  it("holds back an emoji split over four byte tokens until it is complete", () => {
    const tok = byteBpe();
    const ids = tok.encode(" 😀!", false);
    assert.equal(ids.length, 6, "space, 4 emoji bytes, '!'");
    const pieces = stream(" 😀!");
    assert.deepEqual(pieces, [" ", "", "", "", "😀", "!"]);
  });

  it("emits a merged two-byte character at once and an unmerged one on its second byte", () => {
    assert.deepEqual(stream("é"), ["é"]);
    assert.deepEqual(stream("ü"), ["", "ü"]);
  });

  it("never emits U+FFFD and always adds up to the full decode (property)", () => {
    const tok = byteBpe();
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 24 }), (text) => {
        fc.pre(!text.includes("\uFFFD"));
        const ids = tok.encode(text, false);
        const d = new IncrementalDetokenizer((x) => tok.decode(x, true), tok.encode("Hi"));
        const pieces = ids.map((id) => d.push(id));
        for (const p of pieces) assert.ok(!p.includes("\uFFFD"), `broken character in ${JSON.stringify(p)}`);
        assert.equal(pieces.join(""), tok.decode(ids, true));
      }),
      { numRuns: 200 },
    );
  });

  it("skips special tokens when asked to", () => {
    const tok = byteBpe();
    const imEnd = tok.tokenToId("<|im_end|>")!;
    const skip = new IncrementalDetokenizer((x) => tok.decode(x, true), [tok.bosTokenId!]);
    const keep = new IncrementalDetokenizer((x) => tok.decode(x, false), [tok.bosTokenId!]);
    assert.equal(skip.push(imEnd), "");
    assert.equal(keep.push(imEnd), "<|im_end|>");
  });
});
