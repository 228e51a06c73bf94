// resolveModel for local directories and the fill-once primitive under concurrency and failure.
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fillOnce } from "../../src/model/download-lock.ts";
import { resolveModel } from "../../src/model/resolve-model.ts";

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), "lmi-local-test-"));
});
after(() => rm(root, { recursive: true, force: true }));

test("a local directory is used in place, relative to cwd, with no download", async () => {
  const dir = join(root, "models", "tiny");
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "config.json"), "{}");
  const r = await resolveModel({ modelId: "models/tiny", cwd: root, onProgress: null, log: () => {} });
  assert.deepEqual(r, { localDir: dir, source: "local", modelId: "models/tiny", downloaded: false });
});

test("a missing local path is a 404 naming the model id", async () => {
  await assert.rejects(
    resolveModel({ modelId: "./no-such-model", cwd: root, onProgress: null, log: () => {} }),
    (err: { status: number; message: string }) =>
      err.status === 404 && err.message.includes('"./no-such-model"'),
  );
});

test("an invalid model id is a 400 naming it", async () => {
  await assert.rejects(
    resolveModel({ modelId: "a/b/c", cwd: root, onProgress: null, log: () => {} }),
    (err: { status: number; message: string }) => err.status === 400 && err.message.includes('"a/b/c"'),
  );
});

test("fillOnce: concurrent callers fill once; the others wait and get the complete dir", async () => {
  const finalDir = join(root, "once", "target");
  let fills = 0;
  const fill = async (tmp: string) => {
    fills++;
    await new Promise((r) => setTimeout(r, 100));
    await writeFile(join(tmp, "weights"), "complete");
  };
  const results = await Promise.all([1, 2, 3].map(() => fillOnce({ finalDir, fill, pollMs: 10 })));
  assert.equal(fills, 1);
  assert.deepEqual(results.map((r) => r.downloaded).sort(), [false, false, true]);
  assert.equal(await readFile(join(finalDir, "weights"), "utf8"), "complete");
  assert.deepEqual(await readdir(join(root, "once")), ["target"]);
});

test("fillOnce: a failed fill leaves neither final dir nor temp dir nor lock, and the next call fills", async () => {
  const finalDir = join(root, "fail", "target");
  await assert.rejects(
    fillOnce({
      finalDir,
      fill: async (tmp) => {
        await writeFile(join(tmp, "half"), "x");
        throw new Error("boom");
      },
    }),
    /boom/,
  );
  assert.deepEqual(await readdir(join(root, "fail")), []);
  const r = await fillOnce({ finalDir, fill: (tmp) => writeFile(join(tmp, "ok"), "y") });
  assert.equal(r.downloaded, true);
  assert.deepEqual(await readdir(finalDir), ["ok"]);
});

test("fillOnce: a lock whose holder stopped heartbeating is broken after staleMs", async () => {
  const finalDir = join(root, "stale", "target");
  await mkdir(join(root, "stale"), { recursive: true });
  // A holder on another host: its pid cannot be checked, only the lock's age.
  await writeFile(`${finalDir}.lock`, JSON.stringify({ pid: 1, host: "other-host" }));
  const waits: string[] = [];
  const started = Date.now();
  const r = await fillOnce({
    finalDir,
    staleMs: 300,
    pollMs: 20,
    onWait: (h) => waits.push(h),
    fill: (tmp) => writeFile(join(tmp, "ok"), "y"),
  });
  assert.equal(r.downloaded, true);
  assert.deepEqual(waits, ["pid 1 on other-host"]);
  assert.ok(Date.now() - started >= 250, "waited for the lock to go stale");
});
