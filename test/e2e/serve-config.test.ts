// `lmi serve` wiring as users run it: the embedded default model from any cwd, load_models (-m),
// config.properties (-f) with separate inference and management listeners, and a bad configuration
// exiting with status 2 and a message naming the key.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { ROOT, startServe, testModelDir } from "./serve-process.ts";

describe("lmi serve wiring", () => {
  it("with no model configured serves the embedded tiny-kjv, from any working directory", async () => {
    const s = await startServe([], {}, { cwd: tmpdir() });
    try {
      assert.ok(s.logs.join("").includes("(embedded default model)"));
      const ping = (await (await fetch(`${s.url}/ping`)).json()) as Record<string, { status: string }>;
      assert.deepEqual(ping, { tiny_kjv: { status: "Healthy" } });
      const r = await fetch(`${s.url}/invocations`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ inputs: "In the beginning", parameters: { max_new_tokens: 4 } }),
      });
      assert.equal(r.status, 200);
      assert.equal(typeof ((await r.json()) as { generated_text: string }).generated_text, "string");
    } finally {
      await s.stop();
    }
  });

  it("-m name=url registers the model under that name and logs the engine choice", async () => {
    const s = await startServe(["-m", `kjv=${testModelDir()}`]);
    try {
      const list = (await (await fetch(`${s.url}/models`)).json()) as {
        models: Array<{ modelName: string; status: string }>;
      };
      assert.deepEqual(
        list.models.map((m) => [m.modelName, m.status]),
        [["kjv", "READY"]],
      );
      assert.match(s.logs.join(""), /model kjv: paged engine \(option\.rolling_batch=auto/);
    } finally {
      await s.stop();
    }
  });

  it("-f config.properties with different addresses opens two listeners", async () => {
    const dir = mkdtempSync(join(tmpdir(), "lmi-conf-"));
    const conf = join(dir, "config.properties");
    writeFileSync(conf, "inference_address=http://127.0.0.1:0\nmanagement_address=http://localhost:0\n");
    const s = await startServe(["-f", conf, testModelDir()], {}, { port: false });
    try {
      await new Promise((r) => setTimeout(r, 300));
      const logs = s.logs.join("");
      const inf = /Inference API bind to: (\S+)/.exec(logs)?.[1];
      const mgmt = /Management API bind to: (\S+)/.exec(logs)?.[1];
      assert.ok(inf && mgmt, logs);
      assert.equal((await fetch(`${inf}/ping`)).status, 200);
      assert.equal((await fetch(`${inf}/models`)).status, 404);
      assert.equal((await fetch(`${mgmt}/models`)).status, 200);
    } finally {
      await s.stop();
    }
  });

  it("OPTION_ENGINE_THREAD=true: the engine on its own thread streams, answers, refuses, and exits on SIGTERM", async () => {
    const s = await startServe([testModelDir()], { OPTION_ENGINE_THREAD: "true" });
    try {
      const body = { prompt: "In the beginning", max_tokens: 6, stream: true, ignore_eos: true };
      const streams = await Promise.all(
        [0, 1, 2].map(async () => {
          const r = await fetch(`${s.url}/v1/completions`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify(body),
          });
          assert.equal(r.status, 200);
          return (await r.text()).split("\n").filter((l) => l.startsWith("data: {"));
        }),
      );
      for (const events of streams) assert.equal(events.length, 6, events.join("\n"));
      const r = await fetch(`${s.url}/invocations`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          inputs: "In the beginning",
          parameters: { max_new_tokens: 4, details: true },
        }),
      });
      assert.equal(r.status, 200);
      const out = (await r.json()) as { details: { generated_tokens: number } };
      assert.equal(out.details.generated_tokens, 4);
      const bad = await fetch(`${s.url}/invocations`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ inputs: "x ".repeat(5000), parameters: { max_new_tokens: 4 } }),
      });
      assert.equal(bad.status, 424);
      assert.match(await bad.text(), /Input too long/);
    } finally {
      await s.stop();
    }
    assert.equal(s.proc.exitCode, 0, s.logs.join(""));
  });

  it("a bad configuration exits with status 2 and names the key", () => {
    const r = spawnSync(
      process.execPath,
      [join(ROOT, "bin", "lmi.mjs"), "serve", "--port", "0", testModelDir()],
      {
        env: { ...process.env, SERVING_JOB_QUEUE_SIZE: "lots" },
        encoding: "utf8",
        timeout: 30_000,
      },
    );
    assert.equal(r.status, 2, r.stderr + r.stdout);
    assert.match(r.stderr, /job_queue_size/);
  });
});
