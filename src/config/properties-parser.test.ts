// The Java .properties syntax, case by case, with the line numbers and errors callers rely on.
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { ConfigError } from "../errors.ts";
import { parseProperties, readPropertiesFile } from "./properties-parser.ts";

const kv = (text: string) => parseProperties(text, "f.properties").map((e) => [e.key, e.value, e.line]);

test("the three separators: '=', ':' and whitespace, with whitespace around them", () => {
  assert.deepEqual(kv("a=1\nb:2\nc 3\n  d  =  4\ne\t:\t5\nf = = 6"), [
    ["a", "1", 1],
    ["b", "2", 2],
    ["c", "3", 3],
    ["d", "4", 4],
    ["e", "5", 5],
    ["f", "= 6", 6],
  ]);
});

test("comments start with # or ! after optional whitespace; blank lines are skipped", () => {
  assert.deepEqual(kv("# one\n  ! two\n\n   \nk=v # not a comment\n"), [["k", "v # not a comment", 5]]);
});

test("a trailing backslash continues the line and the next line's leading whitespace is dropped", () => {
  assert.deepEqual(kv("k=one \\\n    two\\\n\tthree\nnext=1"), [
    ["k", "one twothree", 1],
    ["next", "1", 4],
  ]);
});

test("an even number of trailing backslashes is an escaped backslash, not a continuation", () => {
  assert.deepEqual(kv("k=a\\\\\nj=b"), [
    ["k", "a\\", 1],
    ["j", "b", 2],
  ]);
});

test("a comment line ending in a backslash does not continue", () => {
  assert.deepEqual(kv("# c \\\nk=v"), [["k", "v", 2]]);
});

test("a continuation on the last line continues into nothing", () => {
  assert.deepEqual(kv("k=v\\"), [["k", "v", 1]]);
});

test("\\uXXXX, \\t \\n \\r \\f and escaped separators in keys and values", () => {
  assert.deepEqual(kv("k\\=x\\:y\\ z=\\u00e9\\u4e2D\\t\\n\\r\\f\\q"), [["k=x:y z", "é中\t\n\r\fq", 1]]);
});

test("\\r\\n and \\r line endings count lines like \\n", () => {
  assert.deepEqual(kv("a=1\r\nb=2\rc=3"), [
    ["a", "1", 1],
    ["b", "2", 2],
    ["c", "3", 3],
  ]);
});

test("a key with no value has an empty value; trailing value whitespace is kept as Java does", () => {
  assert.deepEqual(kv("alone\nk=v  "), [
    ["alone", "", 1],
    ["k", "v  ", 2],
  ]);
});

test("duplicate keys are all returned in order", () => {
  assert.deepEqual(kv("k=1\nk=2"), [
    ["k", "1", 1],
    ["k", "2", 2],
  ]);
});

test("every malformed \\u escape is reported with file and line of the escape", () => {
  assert.throws(
    () => parseProperties("ok=1\nk=\\u12\nj=a\\\n  \\uzzzz", "serving.properties"),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.problems.length, 2);
      assert.match(err.problems[0], /^serving\.properties:2: malformed \\uXXXX escape "\\u12"/);
      assert.match(err.problems[1], /^serving\.properties:4: malformed \\uXXXX escape "\\uzzzz"/);
      return true;
    },
  );
});

test("readPropertiesFile decodes UTF-8, drops a BOM, and names the line of invalid bytes", () => {
  const dir = mkdtempSync(join(tmpdir(), "props-"));
  const good = join(dir, "good.properties");
  writeFileSync(good, "\uFEFFk=caf\u00e9\n");
  assert.deepEqual(readPropertiesFile(good), [{ key: "k", value: "café", line: 1 }]);
  const bad = join(dir, "bad.properties");
  writeFileSync(bad, Buffer.concat([Buffer.from("a=1\nb="), Buffer.from([0xff, 0xfe]), Buffer.from("\n")]));
  assert.throws(() => readPropertiesFile(bad), /bad\.properties:2: the file is not valid UTF-8/);
  assert.throws(() => readPropertiesFile(join(dir, "missing")), /missing: cannot read the properties file/);
});
