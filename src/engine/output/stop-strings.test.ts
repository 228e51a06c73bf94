import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { StopStrings } from "./stop-strings.ts";

describe("StopStrings", () => {
  it("finds a stop sequence that spans the old text and the new characters", () => {
    const s = new StopStrings(["e w"], false);
    assert.equal(s.check("Hello the", 4), null);
    assert.equal(s.check("Hello the world", 6), 8, "cut before the stop");
  });

  it("only searches where the new text could complete a match", () => {
    const s = new StopStrings(["ab"], false);
    // "ab" is entirely in old text: it would have been found when it arrived.
    assert.equal(s.check("xxabyyy", 2), null);
  });

  it("keeps the stop when include_stop_str_in_output, and the earliest of several wins", () => {
    assert.equal(new StopStrings(["e w"], true).check("Hello the world", 6), 11);
    const multi = new StopStrings(["world", "the"], false);
    assert.equal(multi.check("Hello the world", 15), 6);
  });

  it("holds back the longest stop minus one character while streaming", () => {
    assert.equal(new StopStrings(["\n\n", "END"], false).holdBack, 2);
    assert.equal(new StopStrings(["END"], true).holdBack, 0);
    assert.equal(new StopStrings([], false).holdBack, 0);
    assert.ok(new StopStrings([], false).isEmpty);
  });
});
