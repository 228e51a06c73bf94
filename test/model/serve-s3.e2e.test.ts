// End to end: `lmi serve` with option.model_id=s3://... (in serving.properties, the LMI way) against
// s3rver on 127.0.0.1, or option.model_id=org/name against the mock hub, downloads the tiny llama zoo
// model, loads it and answers /invocations with the same greedy text as the local directory does.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { s3TargetDir } from "../../src/model/cache-paths.ts";
import { commitSha, type MockHub, startMockHub } from "./helpers/mock-hub.ts";
import { startS3, type TestS3 } from "./helpers/s3-server.ts";

const REPO = fileURLToPath(new URL("../..", import.meta.url));
const MODEL = join(REPO, "models", "zoo", "llama");
const LMI = join(REPO, "bin", "lmi.mjs");
const URL_S3 = "s3://lmi-e2e/zoo/llama";
const hasModel = existsSync(join(MODEL, "config.json"));

let s3: TestS3;
let hub: MockHub;
let root: string;
const children: ChildProcess[] = [];

interface Served {
  url: string;
  output: () => string;
}

/** Starts `lmi serve ARGS --port 0` and resolves with its address once it logs "bind to". */
function serve(args: string[], env: Record<string, string>): Promise<Served> {
  const child = spawn(process.execPath, [LMI, "serve", ...args, "--port", "0"], {
    env: { PATH: process.env.PATH ?? "", HOME: root, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let out = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`lmi serve did not start in 60 s:\n${out}`)), 60_000);
    const onData = (d: Buffer) => {
      out += d;
      const m = /bind to: (http:\/\/[0-9.]+:\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ url: m[1], output: () => out });
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`lmi serve exited with ${code}:\n${out}`));
    });
  });
}

async function generate(url: string): Promise<string> {
  const res = await fetch(`${url}/invocations`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ inputs: "In the beginning", parameters: { max_new_tokens: 8, do_sample: false } }),
  });
  assert.equal(res.status, 200, await res.clone().text());
  const body = (await res.json()) as { generated_text: string };
  return body.generated_text;
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), "lmi-serve-s3-"));
  s3 = await startS3();
  await s3.createBucket("lmi-e2e");
  hub = await startMockHub();
  if (!hasModel) return;
  const files: Record<string, Buffer> = {};
  for (const f of await readdir(MODEL)) {
    files[f] = await readFile(join(MODEL, f));
    await s3.put("lmi-e2e", `zoo/llama/${f}`, files[f]);
  }
  hub.repos.set("zoo/llama", { refs: { main: commitSha("zoo") }, commits: { [commitSha("zoo")]: files } });
});

after(async () => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGTERM");
  await s3?.close();
  await hub?.close();
  await rm(root, { recursive: true, force: true });
});

test("lmi serve with option.model_id=s3://... serves the downloaded model like the local one", async (t) => {
  if (!hasModel) return t.skip(`the zoo model is not in this checkout (${MODEL})`);
  const modelDir = join(root, "model");
  const downloads = join(root, "downloads");
  await mkdir(modelDir);
  await writeFile(join(modelDir, "serving.properties"), `option.model_id=${URL_S3}\n`);
  const env = { ...s3.env(), SERVING_DOWNLOAD_DIR: downloads };
  // Two servers on the same download dir start together: one downloads, the other waits or reuses.
  const [remote, twin, local] = await Promise.all([
    serve([modelDir], env),
    serve([modelDir], env),
    serve([MODEL], {}),
  ]);

  const ping = await fetch(`${remote.url}/ping`);
  assert.equal(ping.status, 200, remote.output());
  const remoteText = await generate(remote.url);
  assert.ok(remoteText.length > 0);
  assert.equal(remoteText, await generate(local.url), "same greedy output as the local model");
  assert.equal(await generate(twin.url), remoteText);
  const downloaders = [remote, twin].filter((s) => s.output().includes(`Downloading ${URL_S3}`));
  assert.equal(downloaders.length, 1, `${remote.output()}\n---\n${twin.output()}`);

  const target = s3TargetDir(downloads, URL_S3);
  assert.match(remote.output(), new RegExp(`resolving ${URL_S3}`));
  assert.ok(remote.output().includes(target), "the engine loaded the downloaded directory");
  for (const f of await readdir(MODEL)) {
    assert.deepEqual(await readFile(join(target, f)), await readFile(join(MODEL, f)), f);
  }

  // A second server, given the same URL through HF_MODEL_ID (spec §1.3), reuses the complete download.
  const again = await serve([], { ...env, HF_MODEL_ID: URL_S3 });
  assert.match(again.output(), /Using the complete download of s3:\/\/lmi-e2e\/zoo\/llama/);
  assert.equal(await generate(again.url), remoteText);
});

test("lmi serve with option.model_id=org/name and option.revision downloads from the hub (HF_ENDPOINT, HF_HOME)", async (t) => {
  if (!hasModel) return t.skip(`the zoo model is not in this checkout (${MODEL})`);
  const modelDir = join(root, "hub-model");
  const hfHome = join(root, "hf-home");
  await mkdir(modelDir);
  await writeFile(join(modelDir, "serving.properties"), "option.model_id=zoo/llama\noption.revision=main\n");
  const [remote, local] = await Promise.all([
    serve([modelDir], { HF_ENDPOINT: hub.url, HF_HOME: hfHome }),
    serve([MODEL], {}),
  ]);
  const snapshot = join(hfHome, "hub", "models--zoo--llama", "snapshots", commitSha("zoo"));
  assert.ok(remote.output().includes(snapshot), remote.output());
  assert.equal(await generate(remote.url), await generate(local.url));
});
