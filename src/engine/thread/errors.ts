// ServerErrors across the thread boundary: the engine thread sends status, type and message (plus a
// ValidationError's field and a ConfigError's problems); the HTTP thread rebuilds an instance of the same
// class, so `instanceof EngineDeadError` and the HTTP status mapping work as they do in one thread.
// Classes are found by their stable `type` (the DJL exception name), not by constructor name, which a
// bundler may rename.

import {
  ConfigError,
  EngineDeadError,
  ExecutorError,
  OutOfMemoryError,
  OverloadedError,
  PromptTooLongError,
  ServerError,
  ValidationError,
} from "../../errors.ts";
import type { SerializedError } from "./messages.ts";

const CLASSES: Record<string, { prototype: ServerError }> = {
  BadRequestException: ValidationError,
  IllegalConfigurationException: ConfigError,
  ServiceUnavailableException: OverloadedError,
  PromptTooLongException: PromptTooLongError,
  ExecutorError,
  EngineDeadError,
  WlmOutOfMemoryException: OutOfMemoryError,
};

export function serializeError(err: unknown): SerializedError {
  if (err instanceof ServerError) {
    const out: SerializedError = { message: err.message, status: err.status, type: err.type };
    if (err instanceof ValidationError && err.field !== undefined) out.field = err.field;
    if (err instanceof ConfigError) out.problems = [...err.problems];
    return out;
  }
  const e = err instanceof Error ? err : new Error(String(err));
  return { message: e.message, status: 500, type: "ServerError" };
}

export function reviveError(s: SerializedError): ServerError {
  const cls = CLASSES[s.type];
  if (cls === undefined) return new ServerError(s.message, s.status, s.type);
  // The same class and fields without re-running its constructor (some build their message from numbers).
  const err = Object.create(cls.prototype) as ServerError & { field?: string; problems?: string[] };
  const base = new ServerError(s.message, s.status, s.type);
  Object.defineProperties(err, Object.getOwnPropertyDescriptors(base));
  if (s.field !== undefined) err.field = s.field;
  if (s.problems !== undefined) err.problems = s.problems;
  return err;
}
