// handlerOptionsFromConfig: a serving.properties, loaded by the real config loader, becomes the
// handler options (devices as a ;-list, TP max as 0, option.* in the init properties).

import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { loadModelConfig } from "../config/model-config.ts";
import { DEFAULT_SERVING_OPTIONS } from "../registry/types.ts";
import { handlerOptionsFromConfig } from "./from-model-config.ts";

test("a serving.properties maps onto createHandlerModel options", () => {
  const dir = mkdtempSync(join(tmpdir(), "hcfg-"));
  writeFileSync(
    join(dir, "serving.properties"),
    [
      "engine=Python",
      "option.entryPoint=model.py",
      "option.handler=infer",
      "option.tensor_parallel_degree=max",
      "load_on_devices=0;1",
      "option.env=A=1,B=2",
      "option.model_loading_timeout=33",
      "option.predict_timeout=44",
      "option.my_custom_flag=yes",
      "",
    ].join("\n"),
  );
  writeFileSync(join(dir, "model.py"), "def infer(inputs):\n    return None\n");
  const { config } = loadModelConfig({ modelDir: dir, env: {} });
  const o = handlerOptionsFromConfig(config, { ...DEFAULT_SERVING_OPTIONS, batchSize: 4, maxIdleSeconds: 7 });
  assert.equal(o.entryPoint, "model.py");
  assert.equal(o.handler, "infer");
  assert.equal(o.tensorParallelDegree, 0, "max: the worker gets every device");
  assert.equal(o.loadOnDevices, "0;1");
  assert.deepEqual(o.env, { A: "1", B: "2" });
  assert.equal(o.modelLoadingTimeoutS, 33);
  assert.equal(o.predictTimeoutS, 44);
  assert.equal(o.batchSize, 4);
  assert.equal(o.maxIdleS, 7);
  assert.equal(o.properties.my_custom_flag, "yes");
  assert.equal(o.properties.handler, "infer");
});
