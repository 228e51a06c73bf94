// How a Python handler worker is launched (spec §5.1, §1.7, §1.11): entry-point resolution, the
// command line (plain or under mpirun, one socket per rank), devices and the environment.
// Pure functions of the options plus a few file-existence checks; nothing here spawns a process.

import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ConfigError } from "../errors.ts";

/**
 * The repository's python/ folder: djl_python_engine.py and the djl_python package live there.
 * LMI_EXECUTOR_PYTHONPATH (the same folder) serves bundled builds, where this file's URL is not in the repo.
 */
export const PYTHON_RUNTIME_DIR =
  process.env.LMI_EXECUTOR_PYTHONPATH ?? fileURLToPath(new URL("../../python", import.meta.url));
export const ENGINE_SCRIPT = join(PYTHON_RUNTIME_DIR, "djl_python_engine.py");
export const HUGGINGFACE_ENTRY_POINT = "djl_python.huggingface";

export interface EntryPoints {
  entryPoint: string;
  /** Used by the worker when the entry point lacks the requested function (spec §1.7). */
  recommendedEntryPoint: string;
}

/**
 * Entry point when option.entryPoint is unset: DJL_ENTRY_POINT, then `<modelName>.py` or `model.py`
 * in the model dir, then djl_python.huggingface when there is a model_id or a config.json.
 */
export function resolveEntryPoints(opts: {
  modelName: string;
  modelDir: string;
  entryPoint?: string;
  properties: Record<string, string>;
  env?: NodeJS.ProcessEnv;
}): EntryPoints {
  const env = opts.env ?? process.env;
  const hasModelId = Boolean(opts.properties.model_id) || existsSync(join(opts.modelDir, "config.json"));
  const recommended = hasModelId ? HUGGINGFACE_ENTRY_POINT : "";
  const explicit = opts.entryPoint?.trim() || env.DJL_ENTRY_POINT?.trim();
  if (explicit) {
    return { entryPoint: explicit, recommendedEntryPoint: recommended };
  }
  for (const file of [`${opts.modelName}.py`, "model.py"]) {
    if (existsSync(join(opts.modelDir, file)))
      return { entryPoint: file, recommendedEntryPoint: recommended };
  }
  if (recommended) return { entryPoint: recommended, recommendedEntryPoint: recommended };
  throw new ConfigError([`.py file not found in: ${opts.modelDir}`]);
}

/** option.env: `K=V,K2=V2` -> {K: V, K2: V2}. A value may contain `=`; an entry without `=` is an error. */
export function parseOptionEnv(spec: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!spec?.trim()) return out;
  for (const part of spec.split(",")) {
    const entry = part.trim();
    if (!entry) continue;
    const eq = entry.indexOf("=");
    if (eq <= 0) throw new ConfigError([`option.env: '${entry}' is not of the form KEY=VALUE`]);
    out[entry.slice(0, eq).trim()] = entry.slice(eq + 1).trim();
  }
  return out;
}

/**
 * The GPUs a worker may be given when load_on_devices is `*`: the entries of CUDA_VISIBLE_DEVICES when
 * the server itself is restricted, else one id per GPU that `nvidia-smi --list-gpus` reports.
 */
export function visibleGpus(env: NodeJS.ProcessEnv = process.env): string[] {
  const restricted = env.CUDA_VISIBLE_DEVICES;
  if (restricted !== undefined) {
    return restricted
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "" && s !== "-1");
  }
  const res = spawnSync("nvidia-smi", ["--list-gpus"], { encoding: "utf8", timeout: 10_000 });
  if (res.status !== 0 || typeof res.stdout !== "string") return [];
  return res.stdout
    .split("\n")
    .filter((l) => l.startsWith("GPU "))
    .map((_, i) => String(i));
}

/**
 * load_on_devices (`*`, `0;1`, `gpu0;gpu1`) -> the device list each worker gets: groups of
 * `devicesPerWorker` (TP·PP; 0 = all of them) consecutive devices, worker i taking group
 * i mod #groups. `*` means every visible GPU; null means no GPU at all (the worker gets device -1).
 */
export function deviceGroups(
  loadOnDevices: string | undefined,
  devicesPerWorker: number,
  available: () => string[] = visibleGpus,
): string[][] | null {
  const spec = loadOnDevices?.trim();
  const ids =
    !spec || spec === "*"
      ? available()
      : spec
          .split(/[;,]/) // `;` is DJL's separator; `,` is accepted from callers that joined a list
          .map((s) => s.trim())
          .filter(Boolean)
          .map((s) => {
            const m = /^(?:gpu|cuda:?)?(\d+)$/i.exec(s);
            if (!m)
              throw new ConfigError([`load_on_devices: '${s}' is not a device id (expected 0, gpu0 or *)`]);
            return m[1];
          });
  if (ids.length === 0) return null;
  const perWorker = devicesPerWorker > 0 ? devicesPerWorker : ids.length;
  if (ids.length < perWorker) {
    throw new ConfigError([`GPU devices are not enough to run ${perWorker} partitions.`]);
  }
  const groups: string[][] = [];
  for (let i = 0; i + perWorker <= ids.length; i += perWorker) groups.push(ids.slice(i, i + perWorker));
  return groups;
}

export interface LaunchOptions {
  modelDir: string;
  entryPoints: EntryPoints;
  pythonExecutable: string;
  /** The worker's index in the pool; picks its device group. */
  workerIndex: number;
  socketPath: string;
  devices: string[] | null;
  logLevel: "info" | "debug";
  mpiMode: boolean;
  tensorParallelDegree: number;
  pipelineParallelDegree: number;
  mpirun?: string;
  extraEnv: Record<string, string>;
  baseEnv?: NodeJS.ProcessEnv;
}

export interface LaunchCommand {
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  cwd: string;
  /** One socket per rank; rank r of an MPI job listens on `<socketPath>.<r>`. */
  socketPaths: string[];
}

let socketCounter = 0;

/** A fresh socket path; the Node pid keeps concurrent servers (and test runs) from colliding. */
export function nextSocketPath(): string {
  return join(tmpdir(), `djl_sock.${process.pid}.${socketCounter++}`);
}

export function buildLaunchCommand(o: LaunchOptions): LaunchCommand {
  const base = o.baseEnv ?? process.env;
  const modelDir = resolve(o.modelDir);
  const pythonPath = [base.PYTHONPATH, PYTHON_RUNTIME_DIR, modelDir].filter(Boolean).join(delimiter);
  const env: NodeJS.ProcessEnv = { ...base, PYTHONPATH: pythonPath, PYTHONUNBUFFERED: "1", ...o.extraEnv };
  if (o.devices) env.CUDA_VISIBLE_DEVICES = o.devices.join(",");
  const ranks = o.mpiMode ? o.tensorParallelDegree * o.pipelineParallelDegree : 1;
  const scriptArgs = [
    ENGINE_SCRIPT,
    "--sock-type",
    "unix",
    "--sock-name",
    o.socketPath,
    "--model-dir",
    modelDir,
    "--entry-point",
    o.entryPoints.entryPoint,
    "--device-id",
    o.devices ? "0" : "-1",
    "--cluster-size",
    "1",
    "--recommended-entry-point",
    o.entryPoints.recommendedEntryPoint,
    "--log-level",
    o.logLevel,
    "--tensor-parallel-degree",
    String(o.tensorParallelDegree),
    "--pipeline-parallel-degree",
    String(o.pipelineParallelDegree),
  ];
  if (!o.mpiMode) {
    return { command: o.pythonExecutable, args: scriptArgs, env, cwd: modelDir, socketPaths: [o.socketPath] };
  }
  const exported = ["PYTHONPATH", "PYTHONUNBUFFERED", "LD_LIBRARY_PATH", "MKL_DYNAMIC"];
  env.MKL_DYNAMIC = "FALSE";
  env.MASTER_ADDR ??= "127.0.0.1";
  env.MASTER_PORT = String(29500 + (o.workerIndex % 1000));
  exported.push("MASTER_ADDR", "MASTER_PORT", ...Object.keys(o.extraEnv));
  if (o.devices) exported.push("CUDA_VISIBLE_DEVICES");
  const xArgs = [...new Set(exported)].filter((k) => env[k] !== undefined).flatMap((k) => ["-x", k]);
  const mpiArgs = [
    "-np",
    String(ranks),
    "--allow-run-as-root",
    "--bind-to",
    "none",
    "--mca",
    "btl_vader_single_copy_mechanism",
    "none",
    "--tag-output",
    ...xArgs,
    o.pythonExecutable,
    ...scriptArgs,
  ];
  const socketPaths = Array.from({ length: ranks }, (_, r) => `${o.socketPath}.${r}`);
  return { command: o.mpirun ?? "mpirun", args: mpiArgs, env, cwd: modelDir, socketPaths };
}
