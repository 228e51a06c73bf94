// docs/configuration.md must list every key of the schema table, and its syntax example must parse the
// way the page says it does.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { test } from "node:test";
import { formatSchemaMarkdown } from "../../src/config/describe.ts";
import { parseProperties } from "../../src/config/properties-parser.ts";
import { SCHEMA } from "../../src/config/schema/index.ts";

const doc = readFileSync(resolve(import.meta.dirname, "../../docs/configuration.md"), "utf8");

test("docs/configuration.md lists every key of the schema table in its reference", () => {
  const reference = doc.slice(doc.indexOf("## Every key"));
  const missing = SCHEMA.map((e) => e.key).filter((k) => !reference.includes(`| \`${k}\` |`));
  assert.deepEqual(missing, []);
});

test("the reference tables are the current `lmi config --schema --markdown` output", () => {
  assert.ok(
    doc.includes(formatSchemaMarkdown()),
    "regenerate the tables with lmi config --schema --markdown",
  );
});

test("the page's properties example parses as the page describes", () => {
  const block = /```properties\n([\s\S]*?)```/.exec(doc);
  assert.ok(block, "no properties example");
  const entries = Object.fromEntries(parseProperties(block[1], "doc").map((e) => [e.key, e.value]));
  assert.deepEqual(entries, {
    "option.model_id": "gpt2",
    "option.dtype": "fp16",
    "option.entryPoint": "djl_python.huggingface",
    "option.env": "A=1,B=2",
    "option.task": "text-generation",
  });
});
