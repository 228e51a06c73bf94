// resolveModel with hub ids against a local server implementing the hub endpoints @huggingface/hub
// calls (helpers/mock-hub.ts): file selection, HF cache layout, revisions, tokens, retries, reuse,
// offline use, interruption, concurrent starts and each error.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { freeBytes } from "../../src/model/disk-space.ts";
import type { ProgressEvent } from "../../src/model/progress.ts";
import { type ResolveModelOptions, resolveModel } from "../../src/model/resolve-model.ts";
import { resolveInChild, spawnResolveChild } from "./helpers/children.ts";
import { commitSha, type MockHub, startMockHub } from "./helpers/mock-hub.ts";

const SHA1 = commitSha("v1");
const SHA2 = commitSha("v2");
const served: Record<string, Buffer> = {
  "config.json": Buffer.from('{"model_type":"llama"}'),
  "generation_config.json": Buffer.from('{"max_length":64}'),
  "tokenizer.json": randomBytes(20_000),
  "tokenizer_config.json": Buffer.from('{"chat_template":"{{ messages }}"}'),
  "model.safetensors": randomBytes(700_000),
};
const skipped: Record<string, Buffer> = {
  "pytorch_model.bin": randomBytes(1000),
  "README.md": Buffer.from("# tiny"),
  "original/consolidated.00.pth": randomBytes(1000),
};

let hub: MockHub;
let root: string;

async function freshDir(): Promise<string> {
  return mkdtemp(join(root, "dl-"));
}

function opts(extra: Partial<ResolveModelOptions> & { env?: Record<string, string> }): ResolveModelOptions {
  return {
    modelId: "org/tiny",
    onProgress: null,
    log: () => {},
    ...extra,
    env: { HF_ENDPOINT: hub.url, ...extra.env },
  };
}

function fileGets(since: number): string[] {
  return hub.requests
    .slice(since)
    .filter((r) => r.url.includes("/resolve/"))
    .map((r) => r.url);
}

async function refusedUrl(): Promise<string> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return `http://127.0.0.1:${port}`;
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), "lmi-hub-test-"));
  hub = await startMockHub();
  hub.repos.set("org/tiny", {
    refs: { main: SHA2, v1: SHA1 },
    commits: {
      [SHA2]: { ...served, ...skipped },
      [SHA1]: { "config.json": Buffer.from('{"model_type":"old"}'), "model.safetensors": randomBytes(10) },
    },
  });
  hub.repos.set("org/private", { refs: { main: SHA2 }, commits: { [SHA2]: served }, token: "hf_good" });
  // Served slowly (about 1 MiB/s) so a download of it can be killed half-way.
  hub.repos.set("org/slow", { refs: { main: SHA2 }, commits: { [SHA2]: served } });
  hub.slow.set("org/slow/model.safetensors", { chunkBytes: 16_384, delayMs: 15 });
  hub.repos.set("org/gated", { refs: { main: SHA2 }, commits: { [SHA2]: served }, forbidden: true });
  hub.repos.set("org/no-config", {
    refs: { main: SHA2 },
    commits: { [SHA2]: { "README.md": Buffer.from("x") } },
  });
});

after(async () => {
  await hub?.close();
  await rm(root, { recursive: true, force: true });
});

describe("hub model ids", () => {
  test("downloads only the serving files into <dir>/hub/models--org--tiny/snapshots/<commit>", async () => {
    const dir = await freshDir();
    const events: ProgressEvent[] = [];
    const since = hub.requests.length;
    const r = await resolveModel(opts({ downloadDir: dir, onProgress: (e) => events.push(e) }));
    assert.equal(r.source, "hub");
    assert.equal(r.downloaded, true);
    assert.equal(r.commit, SHA2);
    assert.equal(r.localDir, join(dir, "hub", "models--org--tiny", "snapshots", SHA2));
    assert.deepEqual((await readdir(r.localDir)).sort(), Object.keys(served).sort());
    for (const [p, body] of Object.entries(served))
      assert.deepEqual(await readFile(join(r.localDir, p)), body, p);
    assert.equal(await readFile(join(dir, "hub", "models--org--tiny", "refs", "main"), "utf8"), SHA2);
    assert.ok(
      !fileGets(since).some(
        (u) => u.includes("pytorch_model") || u.includes("README") || u.includes("original"),
      ),
    );
    const total = Object.values(served).reduce((a, b) => a + b.length, 0);
    assert.deepEqual(
      [events.at(-1)?.phase, events.at(-1)?.bytesDone, events.at(-1)?.filesDone],
      ["done", total, 5],
    );
    assert.deepEqual(
      await readdir(join(dir, "hub", "models--org--tiny", "snapshots")),
      [SHA2],
      "no temp dir left",
    );
  });

  test("HF_HOME decides the cache when no download dir is given", async () => {
    const home = await freshDir();
    const r = await resolveModel(opts({ env: { HF_HOME: home } }));
    assert.equal(r.localDir, join(home, "hub", "models--org--tiny", "snapshots", SHA2));
  });

  test("option.revision selects a tag or a commit", async () => {
    const dir = await freshDir();
    const byTag = await resolveModel(opts({ downloadDir: dir, revision: "v1" }));
    assert.equal(byTag.commit, SHA1);
    assert.equal(await readFile(join(byTag.localDir, "config.json"), "utf8"), '{"model_type":"old"}');
    const bySha = await resolveModel(opts({ downloadDir: dir, revision: SHA1 }));
    assert.equal(bySha.localDir, byTag.localDir);
    assert.equal(bySha.downloaded, false);
  });

  test("a body cut mid-file is resumed with a Range request and the file is byte-identical", async () => {
    const dir = await freshDir();
    hub.cuts.push({ path: "model.safetensors", afterBytes: 300_000, times: 1 });
    const logs: string[] = [];
    const since = hub.requests.length;
    const r = await resolveModel(opts({ downloadDir: dir, log: (m) => logs.push(m) }));
    assert.deepEqual(await readFile(join(r.localDir, "model.safetensors")), served["model.safetensors"]);
    assert.equal(hub.cuts[0].times, 0, "the cut happened");
    // The resume point is the last byte written: at most the 300000 sent (a stream that errors drops
    // chunks still queued in it).
    const m = logs
      .map((l) => /^retrying org\/tiny\/model\.safetensors from byte (\d+)/.exec(l))
      .find(Boolean);
    assert.ok(m, logs.join("\n"));
    const offset = Number(m[1]);
    assert.ok(offset <= 300_000, `resumed at ${offset}`);
    // From byte 0 the whole file is asked for again (no Range); otherwise the rest of it.
    const resumeRange = offset === 0 ? undefined : `bytes=${offset}-699999`;
    const fileGets = hub.requests
      .slice(since)
      .filter((q) => q.url.endsWith("/model.safetensors") && q.range !== "bytes=0-0");
    assert.deepEqual(
      fileGets.map((q) => q.range),
      [undefined, resumeRange],
    );
    hub.cuts.length = 0;
  });

  test("a large file is fetched as parallel ranged parts; a cut part resumes inside its range", async () => {
    const dir = await freshDir();
    hub.cuts.push({ path: "model.safetensors", afterBytes: 50_000, times: 1, range: "bytes=200000-399999" });
    const since = hub.requests.length;
    const r = await resolveModel(opts({ downloadDir: dir, partSizeBytes: 200_000 }));
    assert.deepEqual(await readFile(join(r.localDir, "model.safetensors")), served["model.safetensors"]);
    const ranges = hub.requests
      .slice(since)
      .filter((q) => q.url.endsWith("/model.safetensors") && q.range !== "bytes=0-0")
      .map((q) => q.range)
      .sort();
    const originals = ["bytes=0-199999", "bytes=200000-399999", "bytes=400000-599999", "bytes=600000-699999"];
    const extra = [...ranges];
    for (const o of originals) {
      const i = extra.indexOf(o);
      assert.ok(i >= 0, `missing ${o} in ${ranges.join(", ")}`);
      extra.splice(i, 1);
    }
    // One resume, inside the cut part's own range, from the last byte written (at most the 50000 sent).
    assert.equal(extra.length, 1, ranges.join(", "));
    const m = /^bytes=(\d+)-399999$/.exec(extra[0] ?? "");
    assert.ok(m && Number(m[1]) >= 200_000 && Number(m[1]) <= 250_000, extra[0]);
    hub.cuts.length = 0;
  });

  test("a complete snapshot is reused: no file is fetched again; offline or unreachable hub uses it too", async () => {
    const dir = await freshDir();
    const first = await resolveModel(opts({ downloadDir: dir }));
    let since = hub.requests.length;
    const again = await resolveModel(opts({ downloadDir: dir }));
    assert.equal(again.localDir, first.localDir);
    assert.equal(again.downloaded, false);
    assert.deepEqual(fileGets(since), []);
    since = hub.requests.length;
    const offline = await resolveModel(opts({ downloadDir: dir, env: { HF_HUB_OFFLINE: "1" } }));
    assert.equal(offline.localDir, first.localDir);
    assert.equal(hub.requests.length, since, "HF_HUB_OFFLINE makes no request");
    const logs: string[] = [];
    const down = await resolveModel(
      opts({ downloadDir: dir, env: { HF_ENDPOINT: await refusedUrl() }, log: (m) => logs.push(m) }),
    );
    assert.equal(down.localDir, first.localDir);
    assert.match(logs.join("\n"), /Hub unreachable .*using cached org\/tiny snapshot/);
  });

  test("a snapshot another tool left incomplete is completed with only the missing files", async () => {
    const dir = await freshDir();
    const snap = join(dir, "hub", "models--org--tiny", "snapshots", SHA2);
    await mkdir(snap, { recursive: true });
    await writeFile(join(snap, "config.json"), served["config.json"]);
    await writeFile(join(snap, "model.safetensors"), served["model.safetensors"].subarray(0, 1000)); // truncated
    const since = hub.requests.length;
    const r = await resolveModel(opts({ downloadDir: dir }));
    assert.equal(r.localDir, snap);
    assert.equal(r.downloaded, true);
    for (const [p, body] of Object.entries(served)) assert.deepEqual(await readFile(join(snap, p)), body, p);
    const fetched = new Set(fileGets(since).map((u) => u.split("/").at(-1)));
    assert.ok(!fetched.has("config.json"), "the complete file was kept");
    assert.ok(fetched.has("model.safetensors"), "the truncated file was fetched again");
    assert.deepEqual(await readdir(join(dir, "hub", "models--org--tiny", "snapshots")), [SHA2]);
  });

  test("an aborted download leaves no snapshot; the next start downloads afresh", async () => {
    const dir = await freshDir();
    const ac = new AbortController();
    await assert.rejects(
      resolveModel(
        opts({
          downloadDir: dir,
          concurrency: 1,
          signal: ac.signal,
          onProgress: (e) => e.bytesDone > 0 && ac.abort(),
        }),
      ),
      (err: Error) => err.name === "AbortError",
    );
    assert.deepEqual(await readdir(join(dir, "hub", "models--org--tiny", "snapshots")), []);
    const r = await resolveModel(opts({ downloadDir: dir }));
    assert.equal(r.downloaded, true);
    assert.deepEqual(await readFile(join(r.localDir, "model.safetensors")), served["model.safetensors"]);
  });

  test("a process killed mid-download (SIGKILL) leaves a temp dir and lock that the next start ignores and removes", async () => {
    const dir = await freshDir();
    const snapshots = join(dir, "hub", "models--org--slow", "snapshots");
    const { child, result } = spawnResolveChild(["org/slow"], {
      HF_ENDPOINT: hub.url,
      HF_HOME: dir,
      HOME: dir,
    });
    // Wait until the child is writing into its temp dir, then kill it without any chance to clean up.
    const deadline = Date.now() + 30_000;
    let temp: string | undefined;
    while (!temp && Date.now() < deadline) {
      const names = await readdir(snapshots).catch(() => [] as string[]);
      const t = names.find((n) => n.startsWith(`.tmp-${SHA2}-`));
      if (t && (await stat(join(snapshots, t, "model.safetensors")).catch(() => null))?.size) temp = t;
      else await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(temp, "the child started writing");
    child.kill("SIGKILL");
    await assert.rejects(result);
    assert.deepEqual(
      (await readdir(snapshots)).sort(),
      [temp, `${SHA2}.lock`].sort(),
      "partial state left behind",
    );

    const r = await resolveModel(opts({ modelId: "org/slow", env: { HF_HOME: dir } }));
    assert.equal(r.downloaded, true);
    assert.deepEqual(await readFile(join(r.localDir, "model.safetensors")), served["model.safetensors"]);
    assert.deepEqual(await readdir(snapshots), [SHA2], "temp dir and stale lock removed");
  });

  test("two processes starting together download once", async () => {
    const dir = await freshDir();
    const since = hub.requests.length;
    const env = { HF_ENDPOINT: hub.url, HF_HOME: dir, HOME: dir };
    const [a, b] = await Promise.all([resolveInChild(["org/tiny"], env), resolveInChild(["org/tiny"], env)]);
    assert.ok(a.ok && b.ok, JSON.stringify([a, b]));
    assert.equal(a.localDir, b.localDir);
    assert.equal([a.downloaded, b.downloaded].filter(Boolean).length, 1);
    const weightGets = hub.requests
      .slice(since)
      .filter((q) => q.url.endsWith("/model.safetensors") && q.range !== "bytes=0-0");
    assert.equal(weightGets.length, 1, "the weights were fetched once");
    assert.deepEqual(await readFile(join(a.localDir!, "model.safetensors")), served["model.safetensors"]);
  });

  test("HF_TOKEN is sent as a Bearer token and opens a private repo", async () => {
    const since = hub.requests.length;
    const r = await resolveModel(
      opts({ modelId: "org/private", downloadDir: await freshDir(), env: { HF_TOKEN: "hf_good" } }),
    );
    assert.ok((await stat(join(r.localDir, "model.safetensors"))).size > 0);
    assert.ok(hub.requests.slice(since).every((q) => q.auth === "Bearer hf_good"));
  });
});

describe("hub errors name the model id", () => {
  const check = (status: number, pattern: RegExp, id: string) => (err: { status: number; message: string }) =>
    err.status === status && pattern.test(err.message) && err.message.includes(`"${id}"`);

  test("missing repo → 404", async () => {
    await assert.rejects(
      resolveModel(opts({ modelId: "org/nope", downloadDir: await freshDir() })),
      check(404, /no repo "org\/nope"/, "org/nope"),
    );
  });

  test("missing revision → 404", async () => {
    await assert.rejects(
      resolveModel(opts({ downloadDir: await freshDir(), revision: "no-such-branch" })),
      check(404, /revision "no-such-branch"/, "org/tiny"),
    );
  });

  test("repo without config.json → 404", async () => {
    await assert.rejects(
      resolveModel(opts({ modelId: "org/no-config", downloadDir: await freshDir() })),
      check(404, /no config\.json/, "org/no-config"),
    );
  });

  test("private repo without HF_TOKEN → 401 asking for it; with a wrong token → 401 rejected", async () => {
    await assert.rejects(
      resolveModel(opts({ modelId: "org/private", downloadDir: await freshDir() })),
      check(401, /set HF_TOKEN/, "org/private"),
    );
    await assert.rejects(
      resolveModel(
        opts({ modelId: "org/private", downloadDir: await freshDir(), env: { HF_TOKEN: "hf_bad" } }),
      ),
      check(401, /HF_TOKEN was rejected/, "org/private"),
    );
  });

  test("gated repo the token may not read → 403", async () => {
    await assert.rejects(
      resolveModel(
        opts({ modelId: "org/gated", downloadDir: await freshDir(), env: { HF_TOKEN: "hf_any" } }),
      ),
      check(403, /access denied by the hub \(Access to model org\/gated is restricted/, "org/gated"),
    );
  });

  test("hub refusing connections with nothing cached → 503", async () => {
    const url = await refusedUrl();
    await assert.rejects(
      resolveModel(opts({ downloadDir: await freshDir(), env: { HF_ENDPOINT: url }, attempts: 2 })),
      check(503, new RegExp(`cannot reach the hub at ${url}.*ECONNREFUSED`), "org/tiny"),
    );
  });

  test("not enough free space (statfs) → 507 before any file is fetched", async () => {
    const dir = await freshDir();
    const since = hub.requests.length;
    await assert.rejects(
      resolveModel(
        opts({ downloadDir: dir, env: { SERVING_DOWNLOAD_MIN_FREE_BYTES: String(await freeBytes(dir)) } }),
      ),
      check(507, /needed plus a reserve/, "org/tiny"),
    );
    assert.deepEqual(fileGets(since), []);
  });
});
