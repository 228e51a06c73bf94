// Errors raised while resolving or downloading model artifacts. Every message names the model id,
// so a failed `lmi serve` or management registration says which model and what to fix.
// Statuses: 404 missing repo/revision/bucket/key/dir, 401 missing or rejected credentials, 403 denied,
// 503 unreachable endpoint, 507 not enough disk space, 400 a model id we cannot parse.
import { ServerError } from "../errors.ts";

/** The repo, revision, bucket, prefix or local directory does not exist (or holds nothing to serve). */
export class ArtifactNotFoundError extends ServerError {
  readonly modelId: string;
  constructor(modelId: string, detail: string, options?: { cause?: unknown }) {
    super(
      `Model artifacts not found for model_id "${modelId}": ${detail}`,
      404,
      "ModelNotFoundException",
      options,
    );
    this.modelId = modelId;
  }
}

/** Credentials are missing (401), rejected (401) or not allowed to read the artifacts (403). */
export class ArtifactAuthError extends ServerError {
  readonly modelId: string;
  constructor(modelId: string, detail: string, status: 401 | 403 = 401, options?: { cause?: unknown }) {
    super(`Cannot access model_id "${modelId}": ${detail}`, status, "ModelAccessDeniedException", options);
    this.modelId = modelId;
  }
}

/** The hub or S3 endpoint could not be reached (refused, DNS failure, reset, timeout) after retries. */
export class ArtifactNetworkError extends ServerError {
  readonly modelId: string;
  constructor(modelId: string, detail: string, options?: { cause?: unknown }) {
    super(
      `Network error downloading model_id "${modelId}": ${detail}`,
      503,
      "ModelDownloadException",
      options,
    );
    this.modelId = modelId;
  }
}

/** The download directory's filesystem has too little free space, checked before writing or hit (ENOSPC). */
export class DiskFullError extends ServerError {
  readonly modelId: string;
  constructor(modelId: string, detail: string, options?: { cause?: unknown }) {
    super(
      `Not enough disk space to download model_id "${modelId}": ${detail}`,
      507,
      "InsufficientStorageException",
      options,
    );
    this.modelId = modelId;
  }
}

/** The model id is none of: an existing local directory, s3://bucket[/prefix], or a hub id org/name. */
export class InvalidModelIdError extends ServerError {
  readonly modelId: string;
  constructor(modelId: string, detail: string) {
    super(`Invalid model_id "${modelId}": ${detail}`, 400, "BadRequestException");
    this.modelId = modelId;
  }
}

const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EPIPE",
  "UND_ERR_SOCKET",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
]);

/** The system error code of `err` or of any error in its cause chain (fetch wraps them in TypeError). */
export function errorCode(err: unknown): string | undefined {
  let e: unknown = err;
  for (let depth = 0; e && depth < 6; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

export function isNetworkError(err: unknown): boolean {
  const code = errorCode(err);
  if (code !== undefined && NETWORK_CODES.has(code)) return true;
  return err instanceof TypeError && err.message === "fetch failed";
}

export function isDiskFullError(err: unknown): boolean {
  const code = errorCode(err);
  return code === "ENOSPC" || code === "EDQUOT";
}

/** Short human text for an unknown error, including its system code when there is one. */
export function describeError(err: unknown): string {
  const code = errorCode(err);
  const msg = err instanceof Error ? err.message : String(err);
  return code && !msg.includes(code) ? `${msg} (${code})` : msg;
}
