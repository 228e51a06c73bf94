// Where downloaded artifacts live. S3: `<root>/download/<sha256(url)>` with root = the `downloadDir`
// option, else SERVING_DOWNLOAD_DIR, else DJL_CACHE_DIR, else ~/.cache/lmi (spec §1.10).
// Hub: the Hugging Face cache layout `<hub cache>/models--org--name/snapshots/<commit>`, so Python
// tools with the same HF_HOME find the files; hub cache = `<downloadDir>/hub`, else HF_HUB_CACHE,
// else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub.
import { createHash } from "node:crypto";
import { homedir } from "node:os";
import { join } from "node:path";

export type Env = Record<string, string | undefined>;

function nonEmpty(v: string | undefined): string | undefined {
  return v !== undefined && v.trim() !== "" ? v : undefined;
}

export function downloadRoot(env: Env, downloadDir?: string): string {
  return (
    nonEmpty(downloadDir) ??
    nonEmpty(env.SERVING_DOWNLOAD_DIR) ??
    nonEmpty(env.DJL_CACHE_DIR) ??
    join(nonEmpty(env.XDG_CACHE_HOME) ?? join(homedir(), ".cache"), "lmi")
  );
}

export function s3TargetDir(root: string, url: string): string {
  return join(root, "download", createHash("sha256").update(url).digest("hex"));
}

export function hubCacheDir(env: Env, downloadDir?: string): string {
  const dir = nonEmpty(downloadDir);
  if (dir) return join(dir, "hub");
  const explicit = nonEmpty(env.HF_HUB_CACHE) ?? nonEmpty(env.HUGGINGFACE_HUB_CACHE);
  if (explicit) return explicit;
  const hfHome = nonEmpty(env.HF_HOME);
  if (hfHome) return join(hfHome, "hub");
  return join(nonEmpty(env.XDG_CACHE_HOME) ?? join(homedir(), ".cache"), "huggingface", "hub");
}

/** `models--org--name`, the folder name huggingface_hub and @huggingface/hub use for a model repo. */
export function hubRepoFolder(repo: string): string {
  return `models--${repo.replaceAll("/", "--")}`;
}
