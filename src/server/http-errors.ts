// The one mapping from errors to HTTP: status + body for plain replies, and the in-stream error line.
// DJL shape (spec §2.6): {"code","type","message"}; LMI rolling-batch parse failures use §3.1's
// {"code":424,"error":"Input Parsing failed. ..."}; /v1/* routes use OpenAI's {"error":{...}} shape.
// Invariant: every non-ServerError is a 500 whose message is the root cause's message.

import { ServerError, ValidationError } from "../errors.ts";

/** 409: a conflicting registration (DJL's IllegalArgumentException mapping). */
export class ConflictError extends ServerError {
  constructor(message: string) {
    super(message, 409, "ConflictException");
  }
}

export class ResourceNotFoundError extends ServerError {
  constructor(message = "Requested resource is not found, please refer to API document.") {
    super(message, 404, "ResourceNotFoundException");
  }
}

export class MethodNotAllowedError extends ServerError {
  constructor() {
    super("Requested method is not allowed, please refer to API document.", 405, "MethodNotAllowedException");
  }
}

export class PayloadTooLargeError extends ServerError {
  constructor(limit: number) {
    super(`Request body exceeds max_request_size (${limit} bytes).`, 413, "TooLongFrameException");
  }
}

/** A request body the LMI input parser rejects (spec §3.1: HTTP 424). */
export class InputParsingError extends ServerError {
  constructor(detail: string) {
    super(
      `Input Parsing failed. Ensure that the request payload is valid. ${detail}`,
      424,
      "InputParsingError",
    );
  }
}

/** A generation that failed inside the engine (spec §3.3: HTTP 424 {"code":424,"error":...}). */
export class InferenceFailedError extends ServerError {
  constructor(detail: string) {
    super(detail, 424, "InferenceFailedError");
  }
}

export interface MappedError {
  status: number;
  type: string;
  message: string;
}

interface FastifyLikeError {
  statusCode?: number;
  code?: string;
  message?: string;
}

/** Normalises anything thrown into a status, a DJL exception type name and a message. */
export function mapError(err: unknown): MappedError {
  if (err instanceof ServerError) return { status: err.status, type: err.type, message: err.message };
  const fe = err as FastifyLikeError | null;
  if (fe && typeof fe === "object" && typeof fe.statusCode === "number" && fe.statusCode < 500) {
    if (fe.code === "FST_ERR_CTP_BODY_TOO_LARGE") {
      return {
        status: 413,
        type: "TooLongFrameException",
        message: "Request body exceeds max_request_size.",
      };
    }
    return { status: fe.statusCode, type: "BadRequestException", message: fe.message ?? "Bad request" };
  }
  let root: unknown = err;
  while (root instanceof Error && root.cause instanceof Error) root = root.cause;
  const message = root instanceof Error ? root.message : String(root);
  return { status: 500, type: "InternalServerException", message };
}

/** DJL error body: {"code","type","message"}; LMI input-parsing errors keep §3.1's {"code","error"}. */
export function djlErrorBody(err: unknown): { status: number; body: Record<string, unknown> } {
  const m = mapError(err);
  if (err instanceof InputParsingError || err instanceof InferenceFailedError) {
    return { status: 424, body: { code: 424, error: m.message } };
  }
  return { status: m.status, body: { code: m.status, type: m.type, message: m.message } };
}

/** OpenAI error body (what the openai SDK reads into APIError.message / .type / .param). */
export function openAiErrorBody(err: unknown): { status: number; body: Record<string, unknown> } {
  const m = mapError(err);
  const param = err instanceof ValidationError ? (err.field ?? null) : null;
  const type = m.status < 500 ? "invalid_request_error" : "server_error";
  return {
    status: m.status,
    body: { object: "error", error: { message: m.message, type, param, code: m.status } },
  };
}

/** Server-generated JSON as DJL writes it: 2-space indent and a trailing newline (spec §2.2). */
export function prettyJson(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}
