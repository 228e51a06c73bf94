// resolveModel with s3:// ids against a real S3-compatible server (s3rver) on 127.0.0.1, some runs
// through a forwarding proxy that counts requests and drops chosen connections mid-body.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { s3TargetDir } from "../../src/model/cache-paths.ts";
import { freeBytes } from "../../src/model/disk-space.ts";
import type { ProgressEvent } from "../../src/model/progress.ts";
import { resolveModel } from "../../src/model/resolve-model.ts";
import { resolveInChild } from "./helpers/children.ts";
import { type FaultProxy, startFaultProxy } from "./helpers/fault-proxy.ts";
import { startS3, type TestS3 } from "./helpers/s3-server.ts";

const BUCKET = "lmi-models";
const PART = 256 * 1024;
const files: Record<string, Buffer> = {
  "config.json": Buffer.from(JSON.stringify({ model_type: "llama", hidden_size: 8 })),
  "model.safetensors": randomBytes(3 * PART + 1234),
  "tokenizer.json": randomBytes(PART - 7),
  "nested/extra.bin": randomBytes(5000),
  "empty.txt": Buffer.alloc(0),
};

let s3: TestS3;
let proxy: FaultProxy;
let root: string;

async function freshDir(): Promise<string> {
  return mkdtemp(join(root, "dl-"));
}

async function assertSameFiles(dir: string): Promise<void> {
  for (const [rel, body] of Object.entries(files)) {
    assert.deepEqual(await readFile(join(dir, rel)), body, rel);
  }
}

function getsFor(key: string): number {
  return proxy.requests.filter((r) => r.method === "GET" && r.path.includes(`/${key}`) && r.range).length;
}

/** A port nothing listens on: bind, note the port, close. */
async function refusedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), "lmi-s3-test-"));
  s3 = await startS3();
  await s3.createBucket(BUCKET);
  for (const [rel, body] of Object.entries(files)) await s3.put(BUCKET, `tiny/${rel}`, body);
  await s3.put(BUCKET, "tiny-other/config.json", "{}"); // same leading chars, must not be synced
  proxy = await startFaultProxy(s3.endpoint);
});

after(async () => {
  await proxy?.close();
  await s3?.close();
  await rm(root, { recursive: true, force: true });
});

describe("s3:// model ids", () => {
  test("syncs the prefix with ranged parts into <dir>/download/<sha256(url)>, byte-identical", async () => {
    const dir = await freshDir();
    const events: ProgressEvent[] = [];
    const before = proxy.requests.length;
    const r = await resolveModel({
      modelId: `s3://${BUCKET}/tiny/`,
      downloadDir: dir,
      env: s3.env(proxy.url),
      partSizeBytes: PART,
      concurrency: 4,
      onProgress: (e) => events.push(e),
      log: () => {},
    });
    assert.equal(r.source, "s3");
    assert.equal(r.downloaded, true);
    assert.equal(r.localDir, s3TargetDir(dir, `s3://${BUCKET}/tiny`));
    await assertSameFiles(r.localDir);
    assert.deepEqual((await readdir(r.localDir)).sort(), [
      "config.json",
      "empty.txt",
      "model.safetensors",
      "nested",
      "tokenizer.json",
    ]);
    const ranged = proxy.requests
      .slice(before)
      .filter((q) => q.path.includes("model.safetensors") && q.range);
    assert.equal(ranged.length, 4, "3 full parts + 1 tail part");
    const total = Object.values(files).reduce((a, b) => a + b.length, 0);
    const last = events.at(-1)!;
    assert.equal(events[0].phase, "start");
    assert.equal(last.phase, "done");
    assert.equal(last.bytesDone, total);
    assert.equal(last.bytesTotal, total);
    assert.equal(last.filesDone, Object.keys(files).length);
    assert.deepEqual(await readdir(dir), ["download"]);
    assert.deepEqual(
      await readdir(join(dir, "download")),
      [r.localDir.split("/").at(-1)],
      "no temp dir or lock left",
    );
  });

  test("parts run concurrently, up to the limit (option, then SERVING_DOWNLOAD_CONCURRENCY)", async () => {
    proxy.getDelayMs = 50;
    try {
      const base = { modelId: `s3://${BUCKET}/tiny`, partSizeBytes: PART, onProgress: null, log: () => {} };
      proxy.maxInFlight = 0;
      await resolveModel({ ...base, downloadDir: await freshDir(), env: s3.env(proxy.url), concurrency: 4 });
      assert.equal(proxy.maxInFlight, 4);
      proxy.maxInFlight = 0;
      const env = { ...s3.env(proxy.url), SERVING_DOWNLOAD_CONCURRENCY: "2" };
      await resolveModel({ ...base, downloadDir: await freshDir(), env });
      assert.equal(proxy.maxInFlight, 2);
    } finally {
      proxy.getDelayMs = 0;
    }
  });

  test("reuses a complete download without listing or fetching again", async () => {
    const dir = await freshDir();
    const opts = {
      modelId: `s3://${BUCKET}/tiny`,
      downloadDir: dir,
      env: s3.env(proxy.url),
      onProgress: null,
      log: () => {},
    };
    const first = await resolveModel(opts);
    const before = proxy.requests.length;
    const second = await resolveModel(opts);
    assert.equal(second.localDir, first.localDir);
    assert.equal(second.downloaded, false);
    assert.equal(proxy.requests.length, before, "no request to S3 for a reused download");
  });

  test("a part cut mid-body is retried and the file is still byte-identical", async () => {
    const dir = await freshDir();
    proxy.faults.push({
      match: (req) =>
        req.method === "GET" &&
        (req.url ?? "").includes("model.safetensors") &&
        req.headers.range === `bytes=${PART}-${2 * PART - 1}`,
      afterBytes: 1000,
      times: 2,
    });
    const cutBefore = proxy.cut;
    const logs: string[] = [];
    const r = await resolveModel({
      modelId: `s3://${BUCKET}/tiny`,
      downloadDir: dir,
      env: s3.env(proxy.url),
      partSizeBytes: PART,
      onProgress: null,
      log: (m) => logs.push(m),
    });
    assert.equal(proxy.cut - cutBefore, 2, "both faults fired");
    assert.equal(logs.filter((l) => l.startsWith("retrying")).length, 2);
    await assertSameFiles(r.localDir);
  });

  test("an aborted download leaves no final dir; the next start downloads afresh", async () => {
    const dir = await freshDir();
    const ac = new AbortController();
    const opts = {
      modelId: `s3://${BUCKET}/tiny`,
      downloadDir: dir,
      env: s3.env(proxy.url),
      partSizeBytes: 64 * 1024,
      concurrency: 1,
      log: () => {},
    };
    await assert.rejects(
      resolveModel({ ...opts, signal: ac.signal, onProgress: (e) => e.bytesDone > 0 && ac.abort() }),
      (err: Error) => err.name === "AbortError",
    );
    const finalDir = s3TargetDir(dir, `s3://${BUCKET}/tiny`);
    assert.deepEqual(await readdir(join(dir, "download")), [], "no final dir, temp dir or lock after abort");
    const r = await resolveModel({ ...opts, onProgress: null });
    assert.equal(r.localDir, finalDir);
    assert.equal(r.downloaded, true);
    await assertSameFiles(finalDir);
  });

  test("a temp dir and lock left by a killed process are ignored and cleaned up", async () => {
    const dir = await freshDir();
    const finalDir = s3TargetDir(dir, `s3://${BUCKET}/tiny`);
    const deadPid = spawnSync(process.execPath, ["-e", ""]).pid;
    const host = (await import("node:os")).hostname();
    const staleTmp = `${finalDir.replace(/[^/]+$/, "")}.tmp-${finalDir.split("/").at(-1)}-${host}~${deadPid}~dead`;
    await mkdir(staleTmp, { recursive: true });
    await writeFile(join(staleTmp, "model.safetensors"), "truncated");
    await writeFile(`${finalDir}.lock`, JSON.stringify({ pid: deadPid, host }));
    const r = await resolveModel({
      modelId: `s3://${BUCKET}/tiny`,
      downloadDir: dir,
      env: s3.env(),
      onProgress: null,
      log: () => {},
    });
    assert.equal(r.downloaded, true);
    await assertSameFiles(r.localDir);
    assert.deepEqual(await readdir(join(dir, "download")), [finalDir.split("/").at(-1)]);
  });

  test("two processes starting together download once and both get the complete dir", async () => {
    const dir = await freshDir();
    const before = getsFor("tiny/model.safetensors");
    const env = { ...s3.env(proxy.url), SERVING_DOWNLOAD_DIR: dir, HOME: dir };
    const [a, b] = await Promise.all([
      resolveInChild([`s3://${BUCKET}/tiny`], env),
      resolveInChild([`s3://${BUCKET}/tiny`], env),
    ]);
    assert.ok(a.ok && b.ok, JSON.stringify([a, b]));
    assert.equal(a.localDir, b.localDir);
    assert.equal([a.downloaded, b.downloaded].filter(Boolean).length, 1, "exactly one process downloaded");
    assert.equal(getsFor("tiny/model.safetensors") - before, 1, "the weights were fetched once");
    await assertSameFiles(a.localDir!);
  });
  test("AWS_REGION signs for that region; AWS_ENDPOINT_URL works when AWS_ENDPOINT_URL_S3 is unset", async () => {
    const since = proxy.requests.length;
    const { AWS_ENDPOINT_URL_S3: _unused, ...base } = s3.env(proxy.url);
    const r = await resolveModel({
      modelId: `s3://${BUCKET}/tiny`,
      downloadDir: await freshDir(),
      env: { ...base, AWS_ENDPOINT_URL: proxy.url, AWS_REGION: "eu-west-3" },
      onProgress: null,
      log: () => {},
    });
    await assertSameFiles(r.localDir);
    const sent = proxy.requests.slice(since);
    assert.ok(
      sent.length > 0 && sent.every((q) => q.auth?.includes("/eu-west-3/s3/aws4_request")),
      sent[0]?.auth,
    );
  });

  test("credentials from a shared credentials file (the SDK's default chain) in a fresh process", async () => {
    const dir = await freshDir();
    const credFile = join(dir, "credentials");
    await writeFile(credFile, "[default]\naws_access_key_id = S3RVER\naws_secret_access_key = S3RVER\n");
    const r = await resolveInChild([`s3://${BUCKET}/tiny`], {
      AWS_ENDPOINT_URL_S3: s3.endpoint,
      AWS_REGION: "us-east-1",
      AWS_EC2_METADATA_DISABLED: "true",
      AWS_SHARED_CREDENTIALS_FILE: credFile,
      AWS_CONFIG_FILE: join(dir, "no-config"),
      HOME: dir,
      SERVING_DOWNLOAD_DIR: dir,
    });
    assert.equal(r.ok, true, r.message);
    await assertSameFiles(r.localDir!);
  });

  test("DJL_TEST_S3_NO_CREDENTIALS sends unsigned requests (public buckets), like --no-sign-request", async () => {
    const since = proxy.requests.length;
    const r = await resolveModel({
      modelId: `s3://${BUCKET}/tiny`,
      downloadDir: await freshDir(),
      env: {
        AWS_ENDPOINT_URL_S3: proxy.url,
        DJL_TEST_S3_NO_CREDENTIALS: "true",
        AWS_EC2_METADATA_DISABLED: "true",
      },
      onProgress: null,
      log: () => {},
    });
    await assertSameFiles(r.localDir);
    const sent = proxy.requests.slice(since);
    assert.ok(sent.length > 0);
    assert.ok(
      sent.every((q) => q.auth === undefined),
      "no Authorization header",
    );
  });
});

describe("s3:// errors name the model id", () => {
  test("missing bucket → 404", async () => {
    const id = "s3://no-such-bucket/tiny";
    await assert.rejects(
      resolveModel({
        modelId: id,
        downloadDir: await freshDir(),
        env: s3.env(),
        onProgress: null,
        log: () => {},
      }),
      (err: { status: number; type: string; message: string }) =>
        err.status === 404 &&
        err.type === "ModelNotFoundException" &&
        err.message.includes(id) &&
        err.message.includes("NoSuchBucket"),
    );
  });

  test("empty prefix → 404 and nothing left behind", async () => {
    const dir = await freshDir();
    const id = `s3://${BUCKET}/missing-model`;
    await assert.rejects(
      resolveModel({ modelId: id, downloadDir: dir, env: s3.env(), onProgress: null, log: () => {} }),
      (err: { status: number; message: string }) =>
        err.status === 404 && err.message.includes(id) && err.message.includes("no objects"),
    );
    assert.deepEqual(await readdir(join(dir, "download")), []);
  });

  test("rejected credentials → 401", async () => {
    const env = { ...s3.env(), AWS_ACCESS_KEY_ID: "WRONG", AWS_SECRET_ACCESS_KEY: "WRONG" };
    await assert.rejects(
      resolveModel({
        modelId: `s3://${BUCKET}/tiny`,
        downloadDir: await freshDir(),
        env,
        onProgress: null,
        log: () => {},
      }),
      (err: { status: number; message: string }) =>
        err.status === 401 && err.message.includes(`s3://${BUCKET}/tiny`),
    );
  });

  test("no credentials anywhere (fresh process, empty HOME, no instance metadata) → 401", async () => {
    const dir = await freshDir();
    const r = await resolveInChild([`s3://${BUCKET}/tiny`], {
      AWS_ENDPOINT_URL_S3: s3.endpoint,
      AWS_REGION: "us-east-1",
      AWS_EC2_METADATA_DISABLED: "true",
      HOME: dir,
      SERVING_DOWNLOAD_DIR: dir,
    });
    assert.equal(r.ok, false);
    assert.equal(r.status, 401, r.message);
    assert.match(r.message!, /no AWS credentials/);
    assert.ok(r.message!.includes(`s3://${BUCKET}/tiny`));
  });

  test("endpoint refusing connections → 503 network error", async () => {
    const port = await refusedPort();
    const id = `s3://${BUCKET}/tiny`;
    await assert.rejects(
      resolveModel({
        modelId: id,
        downloadDir: await freshDir(),
        env: s3.env(`http://127.0.0.1:${port}`),
        onProgress: null,
        log: () => {},
      }),
      (err: { status: number; message: string }) =>
        err.status === 503 && err.message.includes(id) && /ECONNREFUSED/.test(err.message),
    );
  });

  test("not enough free space (statfs) → 507 before any byte is written", async () => {
    const dir = await freshDir();
    // Reserve exactly the free space there is, so the model's bytes cannot fit on the real filesystem.
    const env = { ...s3.env(proxy.url), SERVING_DOWNLOAD_MIN_FREE_BYTES: String(await freeBytes(dir)) };
    const before = proxy.requests.filter((q) => q.method === "GET" && q.range).length;
    await assert.rejects(
      resolveModel({
        modelId: `s3://${BUCKET}/tiny`,
        downloadDir: dir,
        env,
        onProgress: null,
        log: () => {},
      }),
      (err: { status: number; type: string; message: string }) =>
        err.status === 507 &&
        err.type === "InsufficientStorageException" &&
        err.message.includes(`s3://${BUCKET}/tiny`),
    );
    assert.equal(
      proxy.requests.filter((q) => q.method === "GET" && q.range).length,
      before,
      "no object fetched",
    );
    assert.deepEqual(await readdir(join(dir, "download")), []);
  });
});
