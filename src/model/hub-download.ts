// Downloads a hub model with @huggingface/hub into the Hugging Face cache layout
// (`models--org--name/snapshots/<commit>`, `refs/<revision>`): resolve the revision to a commit,
// list the tree, keep the files serving needs (hub-files.ts), fetch them in parallel with retries
// that resume by Range, and rename the finished snapshot into place (download-lock.ts).
// HF_ENDPOINT → hubUrl, HF_TOKEN → accessToken; HF_HUB_OFFLINE=1 (or an unreachable hub) uses the cache.

import { mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { downloadFile, fileDownloadInfo, HubApiError, listFiles, modelInfo } from "@huggingface/hub";
import { type Env, hubRepoFolder } from "./cache-paths.ts";
import { mapConcurrent, withRetries } from "./concurrency.ts";
import { ensureFreeSpace } from "./disk-space.ts";
import { fillOnce } from "./download-lock.ts";
import {
  ArtifactAuthError,
  ArtifactNetworkError,
  ArtifactNotFoundError,
  DiskFullError,
  describeError,
  isDiskFullError,
  isNetworkError,
} from "./errors.ts";
import { selectServingFiles } from "./hub-files.ts";
import { LocalFile, partRanges } from "./local-file.ts";
import { type ProgressCallback, ProgressTracker } from "./progress.ts";
import type { ResolvedModel } from "./resolve-model.ts";

export interface HubDownloadOptions {
  modelId: string;
  repo: string;
  revision?: string;
  cacheDir: string;
  env: Env;
  onProgress?: ProgressCallback;
  log: (msg: string) => void;
  signal?: AbortSignal;
  concurrency: number;
  /** Files larger than this are fetched as parallel ranged parts. */
  partSizeBytes: number;
  attempts: number;
  reserveBytes: number;
}

interface HubFile {
  path: string;
  size: number;
}

const COMMIT = /^[0-9a-f]{40}$/;

function truthy(v: string | undefined): boolean {
  return v !== undefined && ["1", "true", "yes", "on"].includes(v.trim().toLowerCase());
}

function hubParams(o: HubDownloadOptions) {
  const endpoint = o.env.HF_ENDPOINT?.trim();
  const token = (o.env.HF_TOKEN ?? o.env.HUGGING_FACE_HUB_TOKEN)?.trim();
  const signal = o.signal;
  return {
    hubUrl: endpoint ? endpoint.replace(/\/+$/, "") : undefined,
    accessToken: token || undefined,
    fetch: ((input: Parameters<typeof fetch>[0], init?: RequestInit) =>
      fetch(input, { ...init, signal })) as typeof fetch,
  };
}

/** Maps hub and system errors to typed errors naming the model; unknown errors pass through. */
export function toHubError(o: HubDownloadOptions, err: unknown): unknown {
  if (
    err instanceof ArtifactNotFoundError ||
    err instanceof ArtifactAuthError ||
    err instanceof DiskFullError
  ) {
    return err;
  }
  const rev = o.revision ?? "main";
  if (err instanceof HubApiError) {
    if (err.statusCode === 404) {
      return new ArtifactNotFoundError(
        o.modelId,
        `the hub has no repo "${o.repo}" at revision "${rev}" (${err.message})`,
        {
          cause: err,
        },
      );
    }
    if (err.statusCode === 401) {
      const detail = hubParams(o).accessToken
        ? "HF_TOKEN was rejected or has no access to this repo"
        : "the repo is private or gated (or does not exist); set HF_TOKEN to a token with access";
      return new ArtifactAuthError(o.modelId, detail, 401, { cause: err });
    }
    if (err.statusCode === 403) {
      return new ArtifactAuthError(o.modelId, `access denied by the hub (${err.message})`, 403, {
        cause: err,
      });
    }
  }
  if (isDiskFullError(err)) return new DiskFullError(o.modelId, describeError(err), { cause: err });
  if (isNetworkError(err)) {
    const where = hubParams(o).hubUrl ?? "https://huggingface.co";
    return new ArtifactNetworkError(o.modelId, `cannot reach the hub at ${where}: ${describeError(err)}`, {
      cause: err,
    });
  }
  return err;
}

function isRetryable(err: unknown): boolean {
  if (isDiskFullError(err)) return false;
  if (err instanceof HubApiError) return err.statusCode >= 500 || err.statusCode === 429;
  return !(err instanceof Error && err.name === "AbortError");
}

async function isDir(p: string): Promise<boolean> {
  return (await stat(p).catch(() => null))?.isDirectory() === true;
}

/** The cached snapshot for `revision`, for offline use; null when none. */
async function cachedSnapshot(
  repoDir: string,
  revision: string,
): Promise<{ dir: string; commit: string } | null> {
  const commit = COMMIT.test(revision)
    ? revision
    : (await readFile(join(repoDir, "refs", revision), "utf8").catch(() => "")).trim();
  if (!commit) return null;
  const dir = join(repoDir, "snapshots", commit);
  return (await isDir(dir)) ? { dir, commit } : null;
}

/** A byte range of one hub file; `blob` is the library's lazy handle that fetches ranges on demand. */
interface HubPart {
  file: HubFile;
  blob: Blob;
  target: LocalFile;
  start: number;
  /** Exclusive. */
  end: number;
}

/** Size and download handle of each file (one small Range 0-0 request per file), in parallel. */
async function openBlobs(
  o: HubDownloadOptions,
  commit: string,
  files: HubFile[],
): Promise<Map<HubFile, Blob>> {
  const p = hubParams(o);
  const blobs = new Map<HubFile, Blob>();
  const retry = { attempts: o.attempts, baseDelayMs: 200, signal: o.signal, isRetryable };
  await mapConcurrent(files, o.concurrency, async (file) => {
    const common = { repo: o.repo, path: file.path, revision: commit, ...p };
    const info = await withRetries(() => fileDownloadInfo(common), retry);
    if (!info)
      throw new ArtifactNotFoundError(o.modelId, `the hub listed "${file.path}" but does not serve it`);
    if (info.size !== file.size) {
      throw new ArtifactNetworkError(
        o.modelId,
        `"${file.path}" is ${info.size} bytes, but the listing says ${file.size}`,
      );
    }
    const blob = await downloadFile({ ...common, downloadInfo: info });
    if (!blob) throw new ArtifactNotFoundError(o.modelId, `the hub has no file "${file.path}"`);
    blobs.set(file, blob);
  });
  return blobs;
}

/** Fetches one part; a retry resumes at the last byte written with a Range request for the rest. */
async function fetchPart(o: HubDownloadOptions, part: HubPart, tracker: ProgressTracker): Promise<void> {
  const fh = await part.target.get();
  let offset = part.start;
  await withRetries(
    async () => {
      const slice =
        offset === 0 && part.end === part.blob.size ? part.blob : part.blob.slice(offset, part.end);
      for await (const chunk of slice.stream() as unknown as AsyncIterable<Uint8Array>) {
        if (offset + chunk.length > part.end) throw new Error(`too many bytes for ${part.file.path}`);
        await fh.write(chunk, 0, chunk.length, offset);
        offset += chunk.length;
        tracker.addBytes(chunk.length);
      }
      if (offset !== part.end) {
        throw new Error(
          `short read of ${part.file.path}: stopped at byte ${offset} of ${part.start}-${part.end - 1}`,
        );
      }
    },
    {
      attempts: o.attempts,
      baseDelayMs: 200,
      signal: o.signal,
      isRetryable,
      onRetry: (err, attempt) =>
        o.log(
          `retrying ${o.repo}/${part.file.path} from byte ${offset} (attempt ${attempt}): ${describeError(err)}`,
        ),
    },
  );
}

/** Downloads `files` into `dir`: files and parts of large files in parallel, `o.concurrency` at a time. */
async function downloadAll(
  o: HubDownloadOptions,
  commit: string,
  files: HubFile[],
  dir: string,
): Promise<void> {
  const total = files.reduce((a, f) => a + f.size, 0);
  await ensureFreeSpace(o.modelId, dir, total, o.reserveBytes);
  const tracker = new ProgressTracker(o.modelId, o.onProgress);
  tracker.start(total, files.length);
  const blobs = await openBlobs(o, commit, files);
  const targets: LocalFile[] = [];
  const parts: HubPart[] = [];
  for (const file of files) {
    const ranges = partRanges(file.size, o.partSizeBytes);
    const target = new LocalFile(join(dir, file.path), ranges.length);
    targets.push(target);
    for (const [start, end] of ranges) parts.push({ file, blob: blobs.get(file)!, target, start, end });
  }
  try {
    await mapConcurrent(parts, o.concurrency, async (part) => {
      await fetchPart(o, part, tracker);
      if (await part.target.partDone()) tracker.fileDone();
    });
  } finally {
    for (const t of targets) await t.close().catch(() => undefined);
  }
  tracker.done();
}

async function writeRef(repoDir: string, revision: string, commit: string): Promise<void> {
  if (revision === commit) return;
  const ref = join(repoDir, "refs", revision);
  await mkdir(dirname(ref), { recursive: true });
  const tmp = `${ref}.tmp-${process.pid}`;
  await writeFile(tmp, commit);
  await rename(tmp, ref);
}

/** Files of `files` missing from `dir` or of the wrong size (a snapshot another tool left partial). */
async function missingFiles(dir: string, files: HubFile[]): Promise<HubFile[]> {
  const out: HubFile[] = [];
  for (const f of files) {
    const st = await stat(join(dir, f.path)).catch(() => null);
    if (!st || st.size !== f.size) out.push(f);
  }
  return out;
}

export async function downloadHubModel(o: HubDownloadOptions): Promise<ResolvedModel> {
  const revision = o.revision?.trim() || "main";
  const repoDir = join(o.cacheDir, hubRepoFolder(o.repo));
  const result = (dir: string, commit: string, downloaded: boolean): ResolvedModel => ({
    localDir: dir,
    source: "hub",
    modelId: o.modelId,
    downloaded,
    commit,
  });
  if (truthy(o.env.HF_HUB_OFFLINE)) {
    const cached = await cachedSnapshot(repoDir, revision);
    if (!cached)
      throw new ArtifactNotFoundError(
        o.modelId,
        `HF_HUB_OFFLINE is set and revision "${revision}" is not in ${o.cacheDir}`,
      );
    return result(cached.dir, cached.commit, false);
  }
  const p = hubParams(o);
  try {
    let commit: string;
    try {
      const info = await withRetries(
        () => modelInfo({ name: o.repo, revision, additionalFields: ["sha"], ...p }),
        {
          attempts: o.attempts,
          baseDelayMs: 200,
          signal: o.signal,
          isRetryable,
        },
      );
      const sha = (info as { sha?: unknown }).sha;
      // The commit names the snapshot directory; anything else would be an unsafe path component.
      if (typeof sha !== "string" || !COMMIT.test(sha)) {
        throw new ArtifactNotFoundError(o.modelId, `the hub gave no commit for revision "${revision}"`);
      }
      commit = sha;
    } catch (err) {
      const cached = isNetworkError(err) ? await cachedSnapshot(repoDir, revision) : null;
      if (!cached) throw err;
      o.log(`Hub unreachable (${describeError(err)}); using cached ${o.modelId} snapshot ${cached.commit}`);
      return result(cached.dir, cached.commit, false);
    }
    const entries: HubFile[] = [];
    for await (const e of listFiles({ repo: o.repo, revision: commit, recursive: true, ...p })) {
      if (e.type === "file") entries.push({ path: e.path, size: e.lfs?.size ?? e.size });
    }
    const byPath = new Map(entries.map((e) => [e.path, e]));
    const files = selectServingFiles([...byPath.keys()]).map((path) => byPath.get(path)!);
    if (
      !files.some(
        (f) => f.path === "config.json" || f.path === "params.json" || f.path === "serving.properties",
      )
    ) {
      throw new ArtifactNotFoundError(o.modelId, `repo "${o.repo}" at "${revision}" has no config.json`);
    }
    const snapshot = join(repoDir, "snapshots", commit);
    let downloaded = false;
    if (await isDir(snapshot)) {
      const missing = await missingFiles(snapshot, files);
      if (missing.length > 0) {
        // Fill another tool's partial snapshot file by file; each file is renamed in when complete.
        const tmp = `${snapshot}.partial-${process.pid}`;
        try {
          await downloadAll(o, commit, missing, tmp);
          for (const f of missing) await rename(join(tmp, f.path), join(snapshot, f.path));
        } finally {
          await rm(tmp, { recursive: true, force: true });
        }
        downloaded = true;
      }
    } else {
      const filled = await fillOnce({
        finalDir: snapshot,
        signal: o.signal,
        onWait: (holder) => o.log(`Waiting for ${holder} to finish downloading ${o.modelId}`),
        fill: (tmp) => downloadAll(o, commit, files, tmp),
      });
      downloaded = filled.downloaded;
    }
    await writeRef(repoDir, revision, commit);
    if (!downloaded) o.log(`Using the complete download of ${o.modelId} (${commit}) in ${snapshot}`);
    return result(snapshot, commit, downloaded);
  } catch (err) {
    throw toHubError(o, err);
  }
}
