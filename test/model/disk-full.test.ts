// A disk that fills up during a download (another writer takes the space after the free-space
// check passed): the write fails with ENOSPC, resolveModel reports 507 naming the model, and the
// partial temp dir is removed so the space comes back. Needs a small real filesystem: a 2 MiB tmpfs,
// which only root can mount; elsewhere the test is skipped and says so.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { resolveModel } from "../../src/model/resolve-model.ts";
import { commitSha, type MockHub, startMockHub } from "./helpers/mock-hub.ts";
import { startS3, type TestS3 } from "./helpers/s3-server.ts";

const MiB = 1024 * 1024;
let mnt: string;
let mounted = false;
let s3: TestS3;
let hub: MockHub;
const weights = randomBytes(1.5 * MiB);

before(async () => {
  mnt = await mkdtemp(join(tmpdir(), "lmi-small-fs-"));
  mounted =
    spawnSync("mount", ["-t", "tmpfs", "-o", "size=2m", "tmpfs", mnt], { stdio: "ignore" }).status === 0;
  s3 = await startS3();
  await s3.createBucket("full-disk");
  await s3.put("full-disk", "m/config.json", "{}");
  await s3.put("full-disk", "m/model.safetensors", weights);
  hub = await startMockHub();
  hub.repos.set("org/big", {
    refs: { main: commitSha("big") },
    commits: { [commitSha("big")]: { "config.json": Buffer.from("{}"), "model.safetensors": weights } },
  });
});

after(async () => {
  await hub?.close();
  await s3?.close();
  if (mounted) spawnSync("umount", [mnt]);
  await rm(mnt, { recursive: true, force: true });
});

/** Fills half the small filesystem as soon as the download has written its first bytes. Synchronous,
 * so the filler lands before any further chunk of the download. */
function fillerOnFirstBytes(dir: string) {
  let filled = false;
  return (e: { bytesDone: number }) => {
    if (e.bytesDone > 0 && !filled) {
      filled = true;
      writeFileSync(join(dir, "filler"), Buffer.alloc(1 * MiB));
    }
  };
}

test("s3: ENOSPC mid-download → 507 naming the model, temp dir removed", async (t) => {
  if (!mounted) return t.skip("cannot mount a 2 MiB tmpfs (needs root)");
  const dir = join(mnt, "s3");
  await assert.rejects(
    resolveModel({
      modelId: "s3://full-disk/m",
      downloadDir: dir,
      env: s3.env(),
      partSizeBytes: 64 * 1024,
      concurrency: 1,
      onProgress: fillerOnFirstBytes(mnt),
      log: () => {},
    }),
    (err: { status: number; message: string }) =>
      err.status === 507 && err.message.includes('"s3://full-disk/m"') && /ENOSPC/.test(err.message),
  );
  assert.deepEqual(await readdir(join(dir, "download")), []);
  await rm(join(mnt, "filler"));
});

test("hub: ENOSPC mid-download → 507 naming the model, no snapshot left", async (t) => {
  if (!mounted) return t.skip("cannot mount a 2 MiB tmpfs (needs root)");
  const dir = join(mnt, "hub");
  await assert.rejects(
    resolveModel({
      modelId: "org/big",
      downloadDir: dir,
      env: { HF_ENDPOINT: hub.url },
      concurrency: 1,
      onProgress: fillerOnFirstBytes(mnt),
      log: () => {},
    }),
    (err: { status: number; message: string }) =>
      err.status === 507 && err.message.includes('"org/big"') && /ENOSPC/.test(err.message),
  );
  assert.deepEqual(await readdir(join(dir, "hub", "models--org--big", "snapshots")), []);
  await rm(join(mnt, "filler"));
});
