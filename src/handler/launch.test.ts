// Launch tests: entry-point resolution (spec §1.7), option.env, load_on_devices groups and the
// worker command line, plain and under mpirun (spec §5.1).

import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import {
  buildLaunchCommand,
  deviceGroups,
  ENGINE_SCRIPT,
  parseOptionEnv,
  resolveEntryPoints,
  visibleGpus,
} from "./launch.ts";

function dirWith(files: string[]): string {
  const d = mkdtempSync(join(tmpdir(), "launch-"));
  for (const f of files) writeFileSync(join(d, f), "");
  return d;
}

test("entry point: explicit, env, <name>.py, model.py, huggingface, else an error", () => {
  const base = { modelName: "m", properties: {} as Record<string, string>, env: {} };
  assert.deepEqual(resolveEntryPoints({ ...base, modelDir: dirWith(["model.py"]), entryPoint: "x.py" }), {
    entryPoint: "x.py",
    recommendedEntryPoint: "",
  });
  assert.equal(
    resolveEntryPoints({ ...base, modelDir: dirWith([]), env: { DJL_ENTRY_POINT: "pkg.mod" } }).entryPoint,
    "pkg.mod",
  );
  assert.equal(resolveEntryPoints({ ...base, modelDir: dirWith(["m.py", "model.py"]) }).entryPoint, "m.py");
  assert.equal(resolveEntryPoints({ ...base, modelDir: dirWith(["model.py"]) }).entryPoint, "model.py");
  assert.deepEqual(resolveEntryPoints({ ...base, modelDir: dirWith(["config.json"]) }), {
    entryPoint: "djl_python.huggingface",
    recommendedEntryPoint: "djl_python.huggingface",
  });
  assert.deepEqual(
    resolveEntryPoints({ ...base, modelDir: dirWith(["model.py"]), properties: { model_id: "gpt2" } }),
    {
      entryPoint: "model.py",
      recommendedEntryPoint: "djl_python.huggingface",
    },
  );
  const empty = dirWith([]);
  assert.throws(
    () => resolveEntryPoints({ ...base, modelDir: empty }),
    new RegExp(`.py file not found in: ${empty}`),
  );
  assert.equal(
    resolveEntryPoints({ ...base, modelDir: empty, entryPoint: "https://x/model.py" }).entryPoint,
    "https://x/model.py",
    "a URL is kept; handler-model downloads it at start",
  );
});

test("visible GPUs come from CUDA_VISIBLE_DEVICES when the server is restricted", () => {
  assert.deepEqual(visibleGpus({ CUDA_VISIBLE_DEVICES: "2, 3" }), ["2", "3"]);
  assert.deepEqual(visibleGpus({ CUDA_VISIBLE_DEVICES: "-1" }), []);
  assert.deepEqual(visibleGpus({ CUDA_VISIBLE_DEVICES: "" }), []);
});

test("option.env parses K=V pairs and rejects entries without =", () => {
  assert.deepEqual(parseOptionEnv("A=1, B=x=y,,"), { A: "1", B: "x=y" });
  assert.deepEqual(parseOptionEnv(undefined), {});
  assert.throws(() => parseOptionEnv("A=1,oops"), /'oops' is not of the form KEY=VALUE/);
});

test("load_on_devices groups devices per worker", () => {
  const none = () => [];
  assert.equal(deviceGroups("*", 1, none), null);
  assert.equal(deviceGroups(undefined, 2, none), null);
  const two = () => ["0", "1"];
  assert.deepEqual(deviceGroups("*", 1, two), [["0"], ["1"]]);
  assert.deepEqual(deviceGroups(undefined, 0, two), [["0", "1"]], "TP max: one worker gets every GPU");
  assert.deepEqual(deviceGroups("0;1;gpu2;3", 2), [
    ["0", "1"],
    ["2", "3"],
  ]);
  assert.deepEqual(deviceGroups("0;1;2", 2), [["0", "1"]]);
  assert.deepEqual(deviceGroups("0,1", 1), [["0"], ["1"]]);
  assert.throws(() => deviceGroups("0", 2), /GPU devices are not enough to run 2 partitions/);
  assert.throws(() => deviceGroups("0;x", 1), /'x' is not a device id/);
});

const common = {
  modelDir: "/models/m",
  entryPoints: { entryPoint: "model.py", recommendedEntryPoint: "" },
  pythonExecutable: "/usr/bin/python3",
  workerIndex: 0,
  socketPath: "/tmp/djl_sock.1.0",
  logLevel: "info" as const,
  tensorParallelDegree: 2,
  pipelineParallelDegree: 1,
  extraEnv: { HF_HOME: "/cache" },
  baseEnv: { PATH: "/bin", PYTHONPATH: "/site" },
};

test("plain launch: python3 djl_python_engine.py with DJL's arguments and environment", () => {
  const cmd = buildLaunchCommand({ ...common, devices: ["3"], mpiMode: false });
  assert.equal(cmd.command, "/usr/bin/python3");
  assert.equal(cmd.args[0], ENGINE_SCRIPT);
  const arg = (name: string) => cmd.args[cmd.args.indexOf(name) + 1];
  assert.equal(arg("--sock-name"), "/tmp/djl_sock.1.0");
  assert.equal(arg("--entry-point"), "model.py");
  assert.equal(arg("--device-id"), "0");
  assert.deepEqual(cmd.socketPaths, ["/tmp/djl_sock.1.0"]);
  assert.equal(cmd.env.CUDA_VISIBLE_DEVICES, "3");
  assert.equal(cmd.env.HF_HOME, "/cache");
  assert.match(cmd.env.PYTHONPATH ?? "", /^\/site:.*python:\/models\/m$/);
  assert.equal(cmd.cwd, "/models/m");
  assert.equal(
    buildLaunchCommand({ ...common, devices: null, mpiMode: false }).env.CUDA_VISIBLE_DEVICES,
    undefined,
  );
});

test("mpi launch: mpirun -np TP*PP, exported variables, one socket per rank", () => {
  const cmd = buildLaunchCommand({ ...common, devices: ["0", "1"], mpiMode: true, mpirun: "/opt/mpirun" });
  assert.equal(cmd.command, "/opt/mpirun");
  assert.deepEqual(cmd.args.slice(0, 2), ["-np", "2"]);
  assert.ok(cmd.args.includes("--tag-output") && cmd.args.includes("--allow-run-as-root"));
  const exported = cmd.args.flatMap((a, i) => (a === "-x" ? [cmd.args[i + 1]] : []));
  for (const k of ["PYTHONPATH", "CUDA_VISIBLE_DEVICES", "HF_HOME", "MASTER_ADDR", "MASTER_PORT"]) {
    assert.ok(exported.includes(k), `${k} exported`);
  }
  assert.ok(cmd.args.includes("/usr/bin/python3"));
  assert.equal(cmd.args[cmd.args.indexOf("--tensor-parallel-degree") + 1], "2");
  assert.deepEqual(cmd.socketPaths, ["/tmp/djl_sock.1.0.0", "/tmp/djl_sock.1.0.1"]);
});
