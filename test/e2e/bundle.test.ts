// The single-file server bundle (scripts/gpu/build-bundle.sh: what GPU runs of the whole server carry) starts its
// worker threads from itself: the engine thread and the CPU executor's thread both serve a completion.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ROOT, type ServeProcess, startServe, testModelDir } from "./serve-process.ts";

describe("single-file bundle", () => {
  let dir = "";
  let server: ServeProcess | null = null;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), "lmi-bundle-"));
    execFileSync("bash", [join(ROOT, "scripts", "gpu", "build-bundle.sh")], {
      env: { ...process.env, LMI_BUNDLE_DIR: dir, LMI_BUNDLE_NODE: "0" },
      stdio: "pipe",
    });
  });

  after(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("holds the module, the WASM kernels and the matmul helper, and no Node binary when told not to", () => {
    for (const f of ["lmi.mjs", "kernels.wasm", "matmul-helper.mjs"]) assert.ok(existsSync(join(dir, f)), f);
    assert.equal(existsSync(join(dir, "node.xz")), false);
  });

  it("serves a completion with the CPU executor on the engine thread", async () => {
    server = await startServe([testModelDir(), "--executor", "cpu"], {}, { script: join(dir, "lmi.mjs") });
    let ready = false;
    for (let i = 0; i < 100 && !ready; i++) {
      const res = await fetch(`${server.url}/ping`);
      ready = res.status === 200;
      if (!ready) await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok(ready, `the model never became ready:\n${server.logs.join("")}`);
    const res = await fetch(`${server.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: "In the beginning", max_tokens: 4 }),
    });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { usage: { completion_tokens: number } };
    assert.equal(body.usage.completion_tokens, 4);
  });
});
