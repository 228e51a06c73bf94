// resolveModel: turns a model_id (local dir, s3://bucket/prefix, hub org/name) into a local
// directory holding the artifacts, downloading when needed (spec §1.3, §1.10). A returned directory
// is always complete: downloads are filled in a temp dir and renamed into place (download-lock.ts),
// and a complete earlier download is reused without contacting S3.
import { stat } from "node:fs/promises";
import { downloadRoot, type Env, hubCacheDir, s3TargetDir } from "./cache-paths.ts";
import { fillOnce } from "./download-lock.ts";
import { ArtifactNotFoundError, DiskFullError, describeError, isDiskFullError } from "./errors.ts";
import { downloadHubModel } from "./hub-download.ts";
import { parseModelId } from "./model-id.ts";
import { createProgressReporter, type ProgressCallback, ProgressTracker } from "./progress.ts";
import { syncS3Prefix } from "./s3-sync.ts";

export interface ResolveModelOptions {
  modelId: string;
  /** Hub branch, tag or commit (option.revision / HF_REVISION); default "main". Ignored for s3 and local. */
  revision?: string;
  /** Overrides SERVING_DOWNLOAD_DIR (s3) and the HF cache (hub goes to `<downloadDir>/hub`). */
  downloadDir?: string;
  /** Environment to read (HF_*, AWS_*, SERVING_DOWNLOAD_DIR, ...); default process.env. Without keys in
   * it, the AWS SDK's default credential chain reads process.env, profile files and instance roles. */
  env?: Env;
  /** Progress events; default: a bar on a terminal stderr, else a line every 5 s through `log`. `null` silences. */
  onProgress?: ProgressCallback | null;
  /** Informational lines (retries, waiting for another process, reuse); default stderr. */
  log?: (msg: string) => void;
  signal?: AbortSignal;
  /** Parallel part/file transfers; default 16 (SERVING_DOWNLOAD_CONCURRENCY). */
  concurrency?: number;
  /** Size of the ranged parts large files are split into (S3 and hub); default 8 MiB, at least 64 KiB. */
  partSizeBytes?: number;
  /** Tries per part or file, first included; default 4. */
  attempts?: number;
  /** Base for relative local paths; default process.cwd(). */
  cwd?: string;
}

export interface ResolvedModel {
  localDir: string;
  source: "local" | "hub" | "s3";
  modelId: string;
  /** True when this call downloaded the artifacts (false: local, or an earlier download reused). */
  downloaded: boolean;
  /** Hub only: the commit the revision resolved to. */
  commit?: string;
}

export { isRemoteModelId } from "./model-id.ts";

function intFrom(v: string | undefined, fallback: number): number {
  const n = v === undefined ? Number.NaN : Number(v);
  return Number.isFinite(n) && n >= 0 ? Math.floor(n) : fallback;
}

export async function resolveModel(opts: ResolveModelOptions): Promise<ResolvedModel> {
  const env = opts.env ?? process.env;
  const modelId = opts.modelId;
  const spec = parseModelId(modelId, opts.cwd);
  const log = opts.log ?? ((msg: string) => process.stderr.write(`${msg}\n`));
  // Without a terminal, progress lines go through the caller's log (the server logger in `lmi serve`).
  const onProgress =
    opts.onProgress === null ? undefined : (opts.onProgress ?? createProgressReporter({ log: opts.log }));
  const concurrency = opts.concurrency ?? Math.max(1, intFrom(env.SERVING_DOWNLOAD_CONCURRENCY, 16));
  const attempts = Math.max(1, opts.attempts ?? 4);
  const reserveBytes = intFrom(env.SERVING_DOWNLOAD_MIN_FREE_BYTES, 0);
  const partSizeBytes = Math.max(64 * 1024, opts.partSizeBytes ?? 8 * 1024 * 1024);

  if (spec.kind === "local") {
    const st = await stat(spec.path).catch(() => null);
    if (!st?.isDirectory())
      throw new ArtifactNotFoundError(modelId, `local directory ${spec.path} does not exist`);
    return { localDir: spec.path, source: "local", modelId, downloaded: false };
  }

  if (spec.kind === "hub") {
    return downloadHubModel({
      modelId,
      repo: spec.repo,
      revision: opts.revision,
      cacheDir: hubCacheDir(env, opts.downloadDir),
      env,
      onProgress,
      log,
      signal: opts.signal,
      concurrency,
      partSizeBytes,
      attempts,
      reserveBytes,
    });
  }

  const finalDir = s3TargetDir(downloadRoot(env, opts.downloadDir), spec.url);
  try {
    const { dir, downloaded } = await fillOnce({
      finalDir,
      signal: opts.signal,
      onWait: (holder) => log(`Waiting for ${holder} to finish downloading ${modelId} into ${finalDir}`),
      fill: async (tmpDir) => {
        const tracker = new ProgressTracker(modelId, onProgress);
        await syncS3Prefix({
          modelId,
          bucket: spec.bucket,
          prefix: spec.prefix,
          targetDir: tmpDir,
          env,
          tracker,
          signal: opts.signal,
          concurrency,
          partSizeBytes,
          attempts,
          reserveBytes,
          log,
        });
        tracker.done();
      },
    });
    if (!downloaded) log(`Using the complete download of ${modelId} in ${dir}`);
    return { localDir: dir, source: "s3", modelId, downloaded };
  } catch (err) {
    // Creating the temp dir or lock can hit a full disk before any object is written.
    if (isDiskFullError(err)) throw new DiskFullError(modelId, describeError(err), { cause: err });
    throw err;
  }
}
