// Copies every object under s3://bucket/prefix/ into a local directory, like `s5cmd sync`: one
// listing, then ranged GETs of `partSizeBytes` run `concurrency` at a time across all files, each
// part retried on transient failure, each file's size verified against the listing.
// Client: AWS SDK v3 with the standard credential chain, AWS_REGION, and AWS_ENDPOINT_URL_S3 /
// AWS_ENDPOINT_URL as a custom endpoint with path-style addressing (MinIO, s3rver, ...).

import { stat } from "node:fs/promises";
import { join, normalize, sep } from "node:path";
import { GetObjectCommand, ListObjectsV2Command, S3Client, type S3ClientConfig } from "@aws-sdk/client-s3";
import type { Env } from "./cache-paths.ts";
import { mapConcurrent, withRetries } from "./concurrency.ts";
import { ensureFreeSpace } from "./disk-space.ts";
import {
  ArtifactAuthError,
  ArtifactNetworkError,
  ArtifactNotFoundError,
  DiskFullError,
  describeError,
  isDiskFullError,
  isNetworkError,
} from "./errors.ts";
import { LocalFile, partRanges } from "./local-file.ts";
import type { ProgressTracker } from "./progress.ts";

export interface S3Object {
  key: string;
  /** Path relative to the prefix, with "/" separators. */
  relPath: string;
  size: number;
}

export interface S3SyncOptions {
  modelId: string;
  bucket: string;
  prefix: string;
  targetDir: string;
  env: Env;
  tracker: ProgressTracker;
  signal?: AbortSignal;
  concurrency: number;
  partSizeBytes: number;
  attempts: number;
  reserveBytes: number;
  log: (msg: string) => void;
}

function nonEmpty(v: string | undefined): string | undefined {
  return v !== undefined && v.trim() !== "" ? v : undefined;
}

export function createS3Client(env: Env): S3Client {
  const endpoint = nonEmpty(env.AWS_ENDPOINT_URL_S3) ?? nonEmpty(env.AWS_ENDPOINT_URL);
  const config: S3ClientConfig = {
    region: nonEmpty(env.AWS_REGION) ?? nonEmpty(env.AWS_DEFAULT_REGION) ?? "us-east-1",
    maxAttempts: 3,
  };
  if (endpoint) {
    config.endpoint = endpoint;
    config.forcePathStyle = true; // custom endpoints rarely have per-bucket DNS names
  }
  // Keys given in `env` are used as is; otherwise the SDK's default chain (process env, shared
  // config/credentials files, SSO, web identity, container and instance metadata) finds them.
  const keyId = nonEmpty(env.AWS_ACCESS_KEY_ID);
  const secret = nonEmpty(env.AWS_SECRET_ACCESS_KEY);
  if (keyId && secret) {
    config.credentials = {
      accessKeyId: keyId,
      secretAccessKey: secret,
      sessionToken: nonEmpty(env.AWS_SESSION_TOKEN),
    };
  }
  if (nonEmpty(env.DJL_TEST_S3_NO_CREDENTIALS)) {
    // DJL's `--no-sign-request`: anonymous reads of public buckets.
    config.credentials = { accessKeyId: "", secretAccessKey: "" };
    config.signer = { sign: async (request) => request };
  }
  // We pin an SDK release that supports Node 20 (design/dependencies.md §0); its warning is about
  // later releases we do not take, and would otherwise land in every server log.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
  return new S3Client(config);
}

/** Maps an SDK or system error to the typed error a user sees; unknown errors pass through. */
export function toS3Error(modelId: string, err: unknown): unknown {
  if (
    err instanceof ArtifactNotFoundError ||
    err instanceof ArtifactAuthError ||
    err instanceof DiskFullError
  ) {
    return err;
  }
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  const status = e.$metadata?.httpStatusCode;
  const name = e.name ?? "";
  if (name === "CredentialsProviderError" || /Could not load credentials/i.test(describeError(err))) {
    return new ArtifactAuthError(
      modelId,
      "no AWS credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or an instance role)",
      401,
      { cause: err },
    );
  }
  if (name === "NoSuchBucket" || name === "NoSuchKey" || status === 404) {
    return new ArtifactNotFoundError(modelId, `${name || "NotFound"}: ${describeError(err)}`, { cause: err });
  }
  if (name === "InvalidAccessKeyId" || name === "SignatureDoesNotMatch" || status === 401) {
    return new ArtifactAuthError(modelId, `AWS credentials were rejected (${name})`, 401, { cause: err });
  }
  if (name === "AccessDenied" || status === 403) {
    return new ArtifactAuthError(modelId, `access denied (${name || status})`, 403, { cause: err });
  }
  if (isDiskFullError(err)) return new DiskFullError(modelId, describeError(err), { cause: err });
  if (isNetworkError(err)) return new ArtifactNetworkError(modelId, describeError(err), { cause: err });
  return err;
}

function isRetryable(err: unknown): boolean {
  if (isDiskFullError(err)) return false;
  const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  if (status !== undefined && status < 500 && status !== 429 && status !== 408) return false;
  if ((err as { name?: string }).name === "CredentialsProviderError") return false;
  return !(err instanceof Error && err.name === "AbortError");
}

export async function listS3Objects(
  client: S3Client,
  opts: { modelId: string; bucket: string; prefix: string; signal?: AbortSignal },
): Promise<S3Object[]> {
  const listPrefix = opts.prefix ? `${opts.prefix}/` : "";
  const out: S3Object[] = [];
  let token: string | undefined;
  do {
    const res = await client.send(
      new ListObjectsV2Command({ Bucket: opts.bucket, Prefix: listPrefix, ContinuationToken: token }),
      { abortSignal: opts.signal },
    );
    for (const o of res.Contents ?? []) {
      if (!o.Key || o.Key.endsWith("/")) continue; // folder markers
      const relPath = o.Key.slice(listPrefix.length);
      const norm = normalize(relPath);
      if (norm.startsWith("..") || norm.startsWith(sep) || relPath.split("/").includes("..")) {
        throw new ArtifactNotFoundError(
          opts.modelId,
          `refusing object key "${o.Key}" that escapes the prefix`,
        );
      }
      out.push({ key: o.Key, relPath, size: o.Size ?? 0 });
    }
    token = res.IsTruncated ? res.NextContinuationToken : undefined;
  } while (token);
  return out;
}

interface Part {
  obj: S3Object;
  file: LocalFile;
  start: number;
  /** Exclusive. */
  end: number;
}

async function fetchPart(client: S3Client, bucket: string, part: Part, opts: S3SyncOptions): Promise<void> {
  let written = 0;
  try {
    const res = await client.send(
      new GetObjectCommand({
        Bucket: bucket,
        Key: part.obj.key,
        Range: `bytes=${part.start}-${part.end - 1}`,
      }),
      { abortSignal: opts.signal },
    );
    const body = res.Body as AsyncIterable<Uint8Array> | undefined;
    if (!body) throw new Error(`empty body for ${part.obj.key}`);
    const fh = await part.file.get();
    for await (const chunk of body) {
      if (written + chunk.length > part.end - part.start)
        throw new Error(`too many bytes for ${part.obj.key}`);
      await fh.write(chunk, 0, chunk.length, part.start + written);
      written += chunk.length;
      opts.tracker.addBytes(chunk.length);
    }
    if (written !== part.end - part.start) {
      throw new Error(
        `short read of ${part.obj.key} bytes ${part.start}-${part.end - 1}: got ${written} of ${part.end - part.start}`,
      );
    }
  } catch (err) {
    opts.tracker.addBytes(-written); // the retry rewrites this part from its start
    throw err;
  }
}

/** Downloads all objects under the prefix into `targetDir`; throws typed errors naming the model. */
export async function syncS3Prefix(opts: S3SyncOptions): Promise<S3Object[]> {
  const client = createS3Client(opts.env);
  const files: LocalFile[] = [];
  try {
    const objects = await listS3Objects(client, opts);
    if (objects.length === 0) {
      throw new ArtifactNotFoundError(opts.modelId, `no objects under s3://${opts.bucket}/${opts.prefix}`);
    }
    const total = objects.reduce((a, o) => a + o.size, 0);
    await ensureFreeSpace(opts.modelId, opts.targetDir, total, opts.reserveBytes);
    opts.tracker.start(total, objects.length);
    const parts: Part[] = [];
    for (const obj of objects) {
      const ranges = partRanges(obj.size, opts.partSizeBytes);
      const file = new LocalFile(join(opts.targetDir, ...obj.relPath.split("/")), ranges.length);
      files.push(file);
      if (obj.size === 0) {
        await file.get();
        await file.partDone();
        opts.tracker.fileDone();
        continue;
      }
      for (const [start, end] of ranges) parts.push({ obj, file, start, end });
    }
    await mapConcurrent(parts, opts.concurrency, async (part) => {
      await withRetries(() => fetchPart(client, opts.bucket, part, opts), {
        attempts: opts.attempts,
        baseDelayMs: 200,
        signal: opts.signal,
        isRetryable,
        onRetry: (err, attempt) =>
          opts.log(
            `retrying s3://${opts.bucket}/${part.obj.key} part at ${part.start} (attempt ${attempt}): ${describeError(err)}`,
          ),
      });
      if (await part.file.partDone()) opts.tracker.fileDone();
    });
    for (const obj of objects) {
      const size = (await stat(join(opts.targetDir, ...obj.relPath.split("/")))).size;
      if (size !== obj.size) {
        throw new ArtifactNetworkError(
          opts.modelId,
          `s3://${opts.bucket}/${obj.key} is ${size} bytes, expected ${obj.size}`,
        );
      }
    }
    return objects;
  } catch (err) {
    throw toS3Error(opts.modelId, err);
  } finally {
    for (const f of files) await f.close().catch(() => undefined);
    client.destroy();
  }
}
