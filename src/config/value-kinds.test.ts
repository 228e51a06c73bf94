// Value kinds: each accepts what LMI accepts (case-insensitive where LMI is) and says what it expected.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  bool,
  boolOr,
  deviceList,
  envMap,
  float,
  int,
  intOneOf,
  intOrMax,
  oneOf,
  text,
} from "./value-kinds.ts";

const ok = <T>(r: { value: T } | { error: string }) => {
  assert.ok("value" in r, `expected a value, got ${JSON.stringify(r)}`);
  return r.value;
};
const err = (r: { value: unknown } | { error: string }) => {
  assert.ok("error" in r, `expected an error, got ${JSON.stringify(r)}`);
  return r.error;
};

test("bool is case-insensitive and trims; anything else names what it expected", () => {
  assert.equal(ok(bool().parse(" True ")), true);
  assert.equal(ok(bool().parse("FALSE")), false);
  assert.match(err(bool().parse("yes")), /true or false/);
});

test("int checks digits and range", () => {
  const k = int({ min: 1, max: 10 });
  assert.equal(ok(k.parse(" 7")), 7);
  assert.match(err(k.parse("0")), /integer in \[1, 10\]/);
  assert.match(err(k.parse("1.5")), /integer/);
  assert.match(err(k.parse("99999999999999999999")), /too large/);
});

test("float accepts decimals and exponents within range; exclusive minimum", () => {
  const k = float({ min: 0, max: 1, minExclusive: true });
  assert.equal(ok(k.parse("0.5")), 0.5);
  assert.equal(ok(k.parse("1e-1")), 0.1);
  assert.match(err(k.parse("0")), /> 0 and <= 1/);
  assert.match(err(k.parse("abc")), /number/);
});

test("oneOf matches case-insensitively, maps synonyms, and may accept an open pattern", () => {
  const dtype = oneOf(["fp16", "bf16"], { synonyms: { bfloat16: "bf16" } });
  assert.equal(ok(dtype.parse("FP16")), "fp16");
  assert.equal(ok(dtype.parse("BFloat16")), "bf16");
  assert.equal(err(dtype.parse("fp8")), "expected one of fp16, bf16");
  const fmt = oneOf(["json"], { openPattern: /^[a-z_]+$/, openText: "a function name" });
  assert.equal(ok(fmt.parse("my_fn")), "my_fn");
  assert.match(err(fmt.parse("a-b")), /or a function name/);
});

test("boolOr, intOrMax, intOneOf, text", () => {
  assert.equal(ok(boolOr(["huggingface"]).parse("HuggingFace")), "huggingface");
  assert.equal(ok(boolOr(["huggingface"]).parse("True")), true);
  assert.equal(ok(intOrMax().parse("MAX")), "max");
  assert.equal(ok(intOrMax().parse("4")), 4);
  assert.match(err(intOrMax().parse("0")), /or max/);
  assert.equal(ok(intOneOf([8, 16]).parse("16")), 16);
  assert.match(err(intOneOf([8, 16]).parse("12")), /one of 8, 16/);
  assert.match(err(text().parse("  ")), /empty/);
  assert.match(
    err(text({ pattern: /^a/, patternText: "a word starting with a" }).parse("b")),
    /starting with a/,
  );
});

test("deviceList and envMap parse LMI's list syntaxes and format them back", () => {
  assert.deepEqual(ok(deviceList().parse("0;gpu1; 2")), [0, 1, 2]);
  assert.equal(ok(deviceList().parse("*")), "*");
  assert.match(err(deviceList().parse("0;x")), /bad entry "x"/);
  assert.equal(deviceList().format([0, 1]), "0;1");
  const env = ok(envMap().parse("A=1, B_2 = x=y ,"));
  assert.deepEqual(env, { A: "1", B_2: "x=y" });
  assert.equal(envMap().format(env), "A=1,B_2=x=y");
  assert.match(err(envMap().parse("1A=2")), /bad entry "1A=2"/);
});
