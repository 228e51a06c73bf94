// Errors of the Python handler path, mapped to what DJL answers (spec §2.6, §5.7, §5.8): a worker that
// dies or times out mid-request is a TranslateException (400), a failed model load an EngineException
// (or 507 when the worker reported out-of-memory), a full queue 503.

import { OutOfMemoryError, ServerError } from "../errors.ts";
import type { DjlOutput } from "./protocol.ts";

/** The worker process failed while serving (crash, timeout, broken socket): DJL's TranslateException. */
export class WorkerError extends ServerError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 400, "TranslateException", options);
  }
}

/** The model could not be loaded (startup line missing, init reply >= 300, loading timeout). */
export class ModelLoadError extends ServerError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 500, "EngineException", options);
  }
}

/** The `error` (or the whole text) of a worker's error reply, for messages. */
export function outputErrorText(out: DjlOutput): string {
  const raw = Buffer.concat(out.content.map((c) => Buffer.from(c.value))).toString("utf8");
  try {
    const parsed = JSON.parse(raw) as { error?: unknown };
    if (typeof parsed.error === "string") return parsed.error;
  } catch {
    // not JSON: the text itself is the best message we have
  }
  return raw || out.message;
}

/** The init reply's failure as an error: 507 stays 507 (spec §5.3 step 6). */
export function initFailure(modelName: string, out: DjlOutput): ServerError {
  const text = outputErrorText(out);
  if (out.code === 507)
    return new OutOfMemoryError(`Failed to load model ${modelName}: out of memory: ${text}`);
  return new ModelLoadError(`Failed to load model ${modelName} (worker replied ${out.code}): ${text}`);
}
