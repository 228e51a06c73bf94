// Registering models by hub id through the management API, end to end on loopback: the registry's
// loader resolves the id (src/model, against a local mock hub via HF_ENDPOINT), loads the tiny model
// on the paged engine and serves it; sync (200) and async (202 then READY); an unknown repo is 404.
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ROOT } from "../e2e/serve-process.ts";
import { commitSha, type MockHub, startMockHub } from "../model/helpers/mock-hub.ts";
import { realHarness } from "./real-model-harness.ts";

describe("POST /models with a hub id", () => {
  let hub: MockHub;
  let h: ReturnType<typeof realHarness>;
  before(async () => {
    hub = await startMockHub();
    const dir = join(ROOT, "models", "tiny-kjv");
    const files: Record<string, Buffer> = {};
    for (const f of readdirSync(dir)) files[f] = readFileSync(join(dir, f));
    const sha = commitSha("kjv");
    hub.repos.set("lmi-test/tiny-kjv", { refs: { main: sha }, commits: { [sha]: files } });
    const home = mkdtempSync(join(tmpdir(), "lmi-hf-"));
    h = realHarness({ HF_ENDPOINT: hub.url, HF_HOME: home, SERVING_DOWNLOAD_DIR: join(home, "dl") });
  });
  after(async () => {
    await h.registry.closeAll();
    await hub.close();
  });

  it("sync registration downloads, loads and serves", async () => {
    const res = await h.app.inject({ method: "POST", url: "/models?url=lmi-test/tiny-kjv" });
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(JSON.parse(res.body), { status: 'Model "tiny_kjv" registered.' });
    assert.ok(hub.requests.some((r) => r.url.includes("model.safetensors")));
    const gen = await h.app.inject({
      method: "POST",
      url: "/predictions/tiny_kjv",
      headers: { "content-type": "application/json" },
      payload: { inputs: "In the beginning", parameters: { max_new_tokens: 3 } },
    });
    assert.equal(gen.statusCode, 200);
    const d = JSON.parse((await h.app.inject({ method: "GET", url: "/models/tiny_kjv" })).body);
    assert.equal(d[0].models[0].modelUrl, "lmi-test/tiny-kjv");
    assert.equal(d[0].models[0].backend, "engine");
  });

  it("async registration answers 202, then the model turns READY", async () => {
    const res = await h.app.inject({
      method: "POST",
      url: "/models?url=lmi-test/tiny-kjv&model_name=again&synchronous=false",
    });
    assert.equal(res.statusCode, 202);
    const deadline = Date.now() + 30_000;
    let status = "PENDING";
    while (status === "PENDING" && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      const list = JSON.parse((await h.app.inject({ method: "GET", url: "/models" })).body) as {
        models: Array<{ modelName: string; status: string }>;
      };
      status = list.models.find((m) => m.modelName === "again")?.status ?? "missing";
    }
    assert.equal(status, "READY");
  });

  it("an unknown repo answers 404 and registers nothing", async () => {
    const res = await h.app.inject({ method: "POST", url: "/models?url=lmi-test/nope&model_name=nope" });
    assert.equal(res.statusCode, 404, res.body);
    assert.equal(h.registry.has("nope"), false);
  });
});
