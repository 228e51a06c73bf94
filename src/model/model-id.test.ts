import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { isRemoteModelId, parseModelId } from "./model-id.ts";

let cwd: string;
before(async () => {
  cwd = await mkdtemp(join(tmpdir(), "model-id-"));
  await mkdir(join(cwd, "org", "local-model"), { recursive: true });
});
after(() => rm(cwd, { recursive: true, force: true }));

test("an existing directory wins over the hub reading of the same text (DJL maps local paths first)", () => {
  assert.deepEqual(parseModelId("org/local-model", cwd), {
    kind: "local",
    path: join(cwd, "org", "local-model"),
  });
  assert.equal(isRemoteModelId("org/local-model", cwd), false);
  assert.deepEqual(parseModelId(`file://${cwd}`, cwd), { kind: "local", path: cwd });
});

test("s3 urls: bucket, prefix without trailing slash, canonical url", () => {
  assert.deepEqual(parseModelId("s3://my-bucket/a/b/", cwd), {
    kind: "s3",
    url: "s3://my-bucket/a/b",
    bucket: "my-bucket",
    prefix: "a/b",
  });
  assert.deepEqual(parseModelId("s3://my-bucket", cwd), {
    kind: "s3",
    url: "s3://my-bucket",
    bucket: "my-bucket",
    prefix: "",
  });
  assert.equal(isRemoteModelId("s3://my-bucket/x", cwd), true);
});

test("hub ids: name or org/name", () => {
  assert.deepEqual(parseModelId("TinyLlama/TinyLlama-1.1B-Chat-v1.0", cwd), {
    kind: "hub",
    repo: "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
  });
  assert.deepEqual(parseModelId("gpt2", cwd), { kind: "hub", repo: "gpt2" });
  assert.equal(isRemoteModelId("org/other-model", cwd), true);
});

test("paths that do not exist stay local (the resolver reports them missing)", () => {
  assert.deepEqual(parseModelId("./nope", cwd), { kind: "local", path: join(cwd, "nope") });
  assert.deepEqual(parseModelId("/definitely/not/here", cwd), {
    kind: "local",
    path: "/definitely/not/here",
  });
});

test("bad ids are rejected with the id in the message", () => {
  for (const bad of [
    "",
    "a/b/c",
    "org/../x",
    "org/na--me",
    "djl://ai.djl.zoo/x",
    "https://x/y",
    "s3://A_B/x",
    "s3://ab",
  ]) {
    assert.throws(
      () => parseModelId(bad, cwd),
      (err: { status: number; message: string }) => err.status === 400 && err.message.includes(`"${bad}"`),
      bad,
    );
    assert.equal(isRemoteModelId(bad, cwd), false);
  }
});
