// option.entryPoint may be an http(s) URL (spec §1.5): the file is downloaded once to
// `<cache>/tmp/<sha256(url)>/model.py` and the worker imports it from there by absolute path.
// Invariant: the file appears complete or not at all (written to a temp name, then renamed).

import { createHash } from "node:crypto";
import { existsSync, mkdirSync, renameSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { ModelLoadError } from "./errors.ts";

export function isUrlEntryPoint(entryPoint: string): boolean {
  return /^https?:\/\//i.test(entryPoint);
}

/** SERVING_DOWNLOAD_DIR, else DJL_CACHE_DIR, else ~/.djl.ai (DJL's cache root). */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.SERVING_DOWNLOAD_DIR || env.DJL_CACHE_DIR || join(homedir(), ".djl.ai");
}

export async function downloadEntryPoint(url: string, cacheDir: string, timeoutMs = 60_000): Promise<string> {
  const dir = join(cacheDir, "tmp", createHash("sha256").update(url).digest("hex").slice(0, 40));
  const file = join(dir, "model.py");
  if (existsSync(file)) return file;
  let text: string;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    if (!res.ok) throw new Error(`HTTP ${res.status} ${res.statusText}`);
    text = await res.text();
  } catch (e) {
    throw new ModelLoadError(
      `cannot download option.entryPoint ${url}: ${e instanceof Error ? e.message : e}`,
      {
        cause: e,
      },
    );
  }
  mkdirSync(dir, { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
  return file;
}
