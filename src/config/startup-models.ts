// Decides which models `lmi serve` loads at startup (spec §1.1, §1.3): load_models entries, ALL (scan
// model_store), and HF_MODEL_ID. It names each model and says where it is; downloading is src/model/'s job.
// Invariants: names are unique (a later duplicate is a problem); every problem names the entry or env var;
// nothing here touches the network; an empty result means "no configured model" (serve picks its default).
import { existsSync, readdirSync, statSync } from "node:fs";
import { basename, isAbsolute, join, resolve } from "node:path";
import { ConfigError } from "../errors.ts";
import type { ServerConfig } from "./server-config.ts";

export interface StartupModel {
  /** Model name used in URLs (/predictions/{name}). */
  name: string;
  version?: string;
  /** Engine named in the load_models entry (name::MPI=url); passed as extraProperties.engine. */
  engine?: string;
  /** Devices named in the load_models entry (e.g. "0;1" or "*"). */
  devices?: string;
  /** Local model directory, when the model is on disk (holds serving.properties or weights). */
  modelDir?: string;
  /** Remote location to download first: s3://, djl://, http(s):// archive, or an HF hub id. */
  modelUrl?: string;
  /** Properties to pass to loadModelConfig as extraProperties (they beat serving.properties). */
  extraProperties: Record<string, string>;
  /** Where each extra property came from (pass as loadModelConfig's extraSources). */
  extraSources?: Record<string, string>;
  /** Why this model is loaded: "load_models", "model_store (ALL)", "HF_MODEL_ID". */
  origin: string;
}

const ARCHIVE = /\.(zip|tar\.gz|tgz|tar)$/;

/** DJL's rule: the name is the id with every non-word character replaced by '_'. */
export function modelNameFromId(id: string): string {
  return id.replace(/\W/g, "_");
}

function nameFromUrl(url: string): string {
  const path = url.replace(/^[a-z0-9]+:(\/\/)?/i, "").replace(/\/+$/, "");
  return basename(path).replace(ARCHIVE, "") || "model";
}

function isLocalDir(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** file:/x, file:///x or a plain path -> absolute path; undefined for remote URLs. */
function localPath(url: string, cwd: string): string | undefined {
  if (/^file:/i.test(url)) return resolve(cwd, url.replace(/^file:(\/\/)?/i, ""));
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) return undefined;
  return isAbsolute(url) ? url : resolve(cwd, url);
}

function entryToModel(
  entry: string,
  cwd: string,
  where: string,
  problems: string[],
): StartupModel | undefined {
  const eq = entry.indexOf("=");
  const spec = eq >= 0 ? entry.slice(0, eq) : "";
  const url = eq >= 0 ? entry.slice(eq + 1) : entry;
  if (url === "") {
    problems.push(`${where}: load_models entry "${entry}" has no URL after '='`);
    return undefined;
  }
  const [name, version, engine, devices] = spec.split(":");
  const model: StartupModel = { name: name || nameFromUrl(url), extraProperties: {}, origin: "load_models" };
  if (version) model.version = version;
  const source = `${where} (load_models entry ${entry})`;
  if (engine) {
    model.engine = engine;
    model.extraProperties.engine = engine;
    model.extraSources = { ...model.extraSources, engine: source };
  }
  if (devices) {
    model.devices = devices;
    model.extraProperties.load_on_devices = devices;
    model.extraSources = { ...model.extraSources, load_on_devices: source };
  }
  const local = localPath(url, cwd);
  if (local === undefined) model.modelUrl = url;
  else if (isLocalDir(local)) model.modelDir = local;
  else if (ARCHIVE.test(local) && existsSync(local)) model.modelUrl = local;
  else {
    problems.push(`${where}: load_models entry "${entry}": ${local} is not a directory or archive`);
    return undefined;
  }
  return model;
}

function scanStore(store: string, where: string, problems: string[]): StartupModel[] {
  if (!isLocalDir(store)) {
    problems.push(`${where}: model_store ${store} is not a directory`);
    return [];
  }
  const entries = readdirSync(store).filter((n) => !n.startsWith("."));
  if (entries.length === 0) return [];
  const all = entries.map((n) => join(store, n));
  const everyModel = all.every((p) => isLocalDir(p) || ARCHIVE.test(p));
  if (!everyModel)
    return [{ name: basename(store), modelDir: store, extraProperties: {}, origin: "model_store (ALL)" }];
  return all.map((p) =>
    isLocalDir(p)
      ? { name: basename(p), modelDir: p, extraProperties: {}, origin: "model_store (ALL)" }
      : { name: nameFromUrl(p), modelUrl: p, extraProperties: {}, origin: "model_store (ALL)" },
  );
}

function hfModel(env: NodeJS.ProcessEnv, cwd: string): StartupModel | undefined {
  const id = env.HF_MODEL_ID?.trim();
  if (!id) return undefined;
  const origin = "HF_MODEL_ID";
  if (/^(s3|djl):\/\//.test(id)) return { name: nameFromUrl(id), modelUrl: id, extraProperties: {}, origin };
  const local = isAbsolute(id) ? id : resolve(cwd, id);
  if (isLocalDir(local)) return { name: basename(local), modelDir: local, extraProperties: {}, origin };
  const extraProperties: Record<string, string> = { "option.model_id": id };
  const extraSources: Record<string, string> = { "option.model_id": "env HF_MODEL_ID" };
  if (env.HF_REVISION) {
    extraProperties["option.revision"] = env.HF_REVISION;
    extraSources["option.revision"] = "env HF_REVISION";
  }
  if (env.HF_TASK) {
    extraProperties["option.task"] = env.HF_TASK;
    extraSources["option.task"] = "env HF_TASK";
  }
  return { name: modelNameFromId(id), modelUrl: id, extraProperties, extraSources, origin };
}

/**
 * The models to load at startup, from load_models (ALL, the default, scans model_store; NONE loads
 * nothing) plus HF_MODEL_ID (which replaces the ALL scan). When neither names a model but OPTION_MODEL_ID is set, the model store (or nothing) is one
 * model configured by the environment alone.
 */
export function resolveStartupModels(
  server: Pick<ServerConfig, "loadModels" | "modelStore"> & { sources?: ServerConfig["sources"] },
  env: NodeJS.ProcessEnv = process.env,
  cwd: string = process.cwd(),
): StartupModel[] {
  const problems: string[] = [];
  const models: StartupModel[] = [];
  const spec = server.loadModels?.trim();
  const entries = spec ? spec.split(/[\s,]+/).filter(Boolean) : [];
  if (entries.length === 1 && entries[0].toUpperCase() === "NONE") {
    // nothing from load_models
  } else if (entries.length === 0 || (entries.length === 1 && entries[0].toUpperCase() === "ALL")) {
    // With HF_MODEL_ID the store is where that model goes (the LMI image's /opt/ml/model), not a model itself.
    if (server.modelStore && !env.HF_MODEL_ID) {
      models.push(...scanStore(server.modelStore, server.sources?.model_store ?? "model_store", problems));
    }
  } else {
    for (const entry of entries) {
      const m = entryToModel(entry, cwd, server.sources?.load_models ?? "load_models", problems);
      if (m) models.push(m);
    }
  }
  const hf = hfModel(env, cwd);
  if (hf) models.push(hf);
  if (models.length === 0 && env.OPTION_MODEL_ID) {
    const dir = server.modelStore && isLocalDir(server.modelStore) ? server.modelStore : undefined;
    models.push({
      name: modelNameFromId(env.OPTION_MODEL_ID),
      // Without a store directory the id itself is where the model lives (hub id, s3:// or a path).
      ...(dir ? { modelDir: dir } : { modelUrl: env.OPTION_MODEL_ID }),
      extraProperties: {},
      origin: "OPTION_MODEL_ID",
    });
  }
  const seen = new Set<string>();
  for (const m of models) {
    const key = `${m.name}:${m.version ?? ""}`;
    if (seen.has(key))
      problems.push(`${m.origin}: model name "${m.name}" is used twice; give each model its own name`);
    seen.add(key);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return models;
}
