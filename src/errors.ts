// The server's error hierarchy. Every error a client can see is a ServerError with a stable `type`
// (the name DJL Serving uses in its {"code","type","message"} bodies) and an HTTP status.
// One function in server/http-errors.ts maps these to responses, for plain replies and streams alike.

export class ServerError extends Error {
  /** HTTP status code this error maps to. */
  readonly status: number;
  /** The `type` field of the error body (DJL uses the Java exception's simple name). */
  readonly type: string;

  constructor(message: string, status = 500, type = "ServerError", options?: { cause?: unknown }) {
    super(message, options);
    this.name = type;
    this.status = status;
    this.type = type;
  }
}

/** Bad input: a request field or a configuration value. The message names the field. */
export class ValidationError extends ServerError {
  readonly field: string | undefined;
  constructor(message: string, field?: string, status = 400) {
    super(message, status, "BadRequestException");
    this.field = field;
  }
}

/** Configuration problems found at startup or on registration; `problems` lists every one. */
export class ConfigError extends ServerError {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(problems.join("\n"), 400, "IllegalConfigurationException");
    this.problems = problems;
  }
}

/** The job queue is full (job_queue_size) or no worker can take the request. */
export class OverloadedError extends ServerError {
  constructor(message: string) {
    super(message, 503, "ServiceUnavailableException");
  }
}

export class ModelNotFoundError extends ServerError {
  constructor(name: string) {
    super(`Model or workflow not found: ${name}`, 404, "ModelNotFoundException");
  }
}

export class ModelNotReadyError extends ServerError {
  constructor(name: string) {
    super(`Model is not ready: ${name}`, 503, "WlmException");
  }
}

/** Prompt longer than the model allows: LMI answers 424 (integration test input_length_exceeded). */
export class PromptTooLongError extends ServerError {
  constructor(numTokens: number, limit: number) {
    super(
      `Input too long: the prompt has ${numTokens} tokens, but this model accepts at most ${limit} tokens ` +
        "(prompt plus max_new_tokens must fit in the model's maximum sequence length).",
      424,
      "PromptTooLongException",
    );
  }
}

/** The executor (CPU thread, GPU rank, Python worker) failed or died. */
export class ExecutorError extends ServerError {
  constructor(message: string, options?: { cause?: unknown; status?: number }) {
    super(message, options?.status ?? 424, "ExecutorError", options);
  }
}

/** The engine is shut down or crashed and has not restarted yet. */
export class EngineDeadError extends ServerError {
  constructor(message = "The inference engine is not running.") {
    super(message, 503, "EngineDeadError");
  }
}

/** Out of device or host memory (DJL: 507). */
export class OutOfMemoryError extends ServerError {
  constructor(message: string) {
    super(message, 507, "WlmOutOfMemoryException");
  }
}
