// Which models start: load_models entries, the ALL scan of model_store, HF_MODEL_ID, and the problems.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { ConfigError } from "../errors.ts";
import { modelNameFromId, resolveStartupModels } from "./startup-models.ts";

function store(layout: Record<string, string | null>): string {
  const dir = mkdtempSync(join(tmpdir(), "store-"));
  for (const [name, body] of Object.entries(layout)) {
    if (body === null) mkdirSync(join(dir, name), { recursive: true });
    else writeFileSync(join(dir, name), body);
  }
  return dir;
}

test("ALL: every sub-directory or archive of the store is a model", () => {
  const dir = store({ a: null, b: null, "c.zip": "", ".hidden": "" });
  const models = resolveStartupModels({ loadModels: "ALL", modelStore: dir }, {});
  assert.deepEqual(
    models.map((m) => [m.name, m.modelDir ?? m.modelUrl]),
    [
      ["a", join(dir, "a")],
      ["b", join(dir, "b")],
      ["c", join(dir, "c.zip")],
    ],
  );
});

test("ALL: a store holding files is itself one model; unset load_models means ALL", () => {
  const dir = store({ "serving.properties": "option.model_id=gpt2\n", "config.json": "{}" });
  const models = resolveStartupModels({ loadModels: undefined, modelStore: dir }, {});
  assert.equal(models.length, 1);
  assert.equal(models[0].modelDir, dir);
  assert.equal(models[0].origin, "model_store (ALL)");
});

test("load_models entries: name:version:engine:devices=url, comma or space separated", () => {
  const dir = store({ m: null });
  const models = resolveStartupModels(
    {
      loadModels: `test::MPI=${join(dir, "m")}, other:2=file:${join(dir, "m")} s3model=s3://bucket/llama/`,
      modelStore: undefined,
    },
    {},
  );
  assert.deepEqual(models[0], {
    name: "test",
    engine: "MPI",
    modelDir: join(dir, "m"),
    extraProperties: { engine: "MPI" },
    extraSources: { engine: `load_models (load_models entry test::MPI=${join(dir, "m")})` },
    origin: "load_models",
  });
  assert.equal(models[1].name, "other");
  assert.equal(models[1].version, "2");
  assert.equal(models[1].modelDir, join(dir, "m"));
  assert.equal(models[2].modelUrl, "s3://bucket/llama/");
  assert.equal(resolveStartupModels({ loadModels: "NONE", modelStore: dir }, {}).length, 0);
});

test("HF_MODEL_ID: hub id gets model_id/revision/task properties and a word-character name", () => {
  const [m] = resolveStartupModels(
    { loadModels: "ALL", modelStore: store({ x: null }) },
    { HF_MODEL_ID: "TheBloke/Llama-2-7B", HF_REVISION: "main", HF_TASK: "text-generation" },
  );
  assert.equal(m.name, "TheBloke_Llama_2_7B");
  assert.deepEqual(m.extraProperties, {
    "option.model_id": "TheBloke/Llama-2-7B",
    "option.revision": "main",
    "option.task": "text-generation",
  });
  assert.equal(modelNameFromId("a.b-c/d"), "a_b_c_d");
  const [s3] = resolveStartupModels(
    { loadModels: "NONE", modelStore: undefined },
    { HF_MODEL_ID: "s3://b/m" },
  );
  assert.equal(s3.modelUrl, "s3://b/m");
});

test("bad entries and duplicate names are reported together", () => {
  assert.throws(
    () => resolveStartupModels({ loadModels: "a=/does/not/exist b= a=s3://x/a", modelStore: undefined }, {}),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.problems.length, 2, err.problems.join("\n"));
      assert.match(err.problems[0], /\/does\/not\/exist is not a directory or archive/);
      assert.match(err.problems[1], /has no URL after '='/);
      return true;
    },
  );
  assert.throws(
    () => resolveStartupModels({ loadModels: "a=s3://x/a a=s3://x/b", modelStore: undefined }, {}),
    /model name "a" is used twice/,
  );
});

test("OPTION_MODEL_ID alone: the id is the model's url (no store dir to hold it)", () => {
  const models = resolveStartupModels(
    { loadModels: undefined, modelStore: undefined },
    {
      OPTION_MODEL_ID: "s3://bucket/llama",
    },
  );
  assert.equal(models.length, 1);
  assert.equal(models[0].modelUrl, "s3://bucket/llama");
  assert.equal(models[0].modelDir, undefined);
  assert.equal(models[0].origin, "OPTION_MODEL_ID");
});
