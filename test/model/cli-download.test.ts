// `lmi download` end to end as a child process: against s3rver and the mock hub, checking stdout
// (the local dir), stderr progress lines (no terminal: periodic log lines) and exit codes.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { commitSha, type MockHub, startMockHub } from "./helpers/mock-hub.ts";
import { startS3, type TestS3 } from "./helpers/s3-server.ts";

const LMI = fileURLToPath(new URL("../../bin/lmi.mjs", import.meta.url));
const weights = randomBytes(300_000);
let s3: TestS3;
let hub: MockHub;
let root: string;

function lmi(
  args: string[],
  env: Record<string, string>,
  onStderr?: (soFar: string, child: ChildProcess) => void,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [LMI, ...args], {
      env: { PATH: process.env.PATH ?? "", HOME: root, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => {
      stderr += d;
      onStderr?.(stderr, child);
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), "lmi-cli-dl-"));
  s3 = await startS3();
  await s3.createBucket("cli-models");
  await s3.put("cli-models", "m/config.json", "{}");
  await s3.put("cli-models", "m/model.safetensors", weights);
  hub = await startMockHub();
  hub.repos.set("org/m", {
    refs: { main: commitSha("a"), v2: commitSha("b") },
    commits: {
      [commitSha("a")]: { "config.json": Buffer.from("{}"), "model.safetensors": weights },
      [commitSha("b")]: { "config.json": Buffer.from('{"v":2}'), "model.safetensors": weights },
    },
  });
  hub.repos.set("org/slow", {
    refs: { main: commitSha("s") },
    commits: { [commitSha("s")]: { "config.json": Buffer.from("{}"), "model.safetensors": weights } },
  });
  hub.slow.set("org/slow/model.safetensors", { chunkBytes: 4096, delayMs: 20 });
});

after(async () => {
  await hub?.close();
  await s3?.close();
  await rm(root, { recursive: true, force: true });
});

test("lmi download s3://... --dir D prints the dir, logs progress, and reuses it the second time", async () => {
  const dir = join(root, "s3");
  const first = await lmi(["download", "s3://cli-models/m", "--dir", dir], s3.env());
  assert.equal(first.code, 0, first.stderr);
  const localDir = first.stdout.trim();
  assert.ok(localDir.startsWith(join(dir, "download")), localDir);
  assert.deepEqual(await readFile(join(localDir, "model.safetensors")), weights);
  assert.match(first.stderr, /Downloading s3:\/\/cli-models\/m: 293\.0 KiB in 2 files/);
  assert.match(
    first.stderr,
    /s3:\/\/cli-models\/m: 293\.0 KiB \/ 293\.0 KiB \(100\.0%\), 2\/2 files, .*done in/,
  );
  const second = await lmi(["download", "s3://cli-models/m", "--dir", dir], s3.env());
  assert.equal(second.code, 0);
  assert.equal(second.stdout.trim(), localDir);
  assert.match(second.stderr, /Using the complete download of s3:\/\/cli-models\/m/);
});

test("lmi download with HF_MODEL_ID, --revision and HF_ENDPOINT", async () => {
  const r = await lmi(["download", "--revision", "v2", "-q"], {
    HF_MODEL_ID: "org/m",
    HF_ENDPOINT: hub.url,
    HF_HOME: join(root, "hf"),
  });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), join(root, "hf", "hub", "models--org--m", "snapshots", commitSha("b")));
  assert.equal(await readFile(join(r.stdout.trim(), "config.json"), "utf8"), '{"v":2}');
  assert.equal(r.stderr, "", "--quiet prints nothing on stderr");
});

test("Ctrl-C (SIGINT) stops lmi download, exits 1 and leaves no snapshot, temp dir or lock", async () => {
  const hfHome = join(root, "hf-slow");
  let sent = false;
  const r = await lmi(["download", "org/slow"], { HF_ENDPOINT: hub.url, HF_HOME: hfHome }, (err, child) => {
    if (!sent && err.includes("Downloading org/slow")) {
      sent = true;
      setTimeout(() => child.kill("SIGINT"), 200);
    }
  });
  assert.ok(sent, r.stderr);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /lmi download: .*aborted/);
  assert.equal(r.stdout, "");
  assert.deepEqual(await readdir(join(hfHome, "hub", "models--org--slow", "snapshots")), []);
});

test("lmi download exits 1 with an error naming the model id", async () => {
  const r = await lmi(["download", "s3://no-such-bucket/m", "--dir", join(root, "err")], s3.env());
  assert.equal(r.code, 1);
  assert.equal(r.stdout, "");
  assert.match(
    r.stderr,
    /^lmi download: Model artifacts not found for model_id "s3:\/\/no-such-bucket\/m": NoSuchBucket/,
  );
});

test("lmi download without a model id or HF_MODEL_ID exits 2", async () => {
  const r = await lmi(["download"], {});
  assert.equal(r.code, 2);
  assert.match(r.stderr, /give a model id or set HF_MODEL_ID/);
});
