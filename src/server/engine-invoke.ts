// Serves one inference request on a paged-engine model: parses the body (LMI text request, or an
// OpenAI chat/completions body), validates parameters with the engine's validator, takes a queue
// slot, picks the output formatter (request > option.output_formatter > stream default) and writes.
// Invariant: on LMI routes every input problem is a 424 InputParsingError (spec §3.1); on /v1 routes
// it stays a 400 ValidationError (OpenAI clients expect 400).

import type { FastifyReply, FastifyRequest } from "fastify";
import type { ChatMessage, GenerationParams } from "../engine/protocol.ts";
import { ValidationError } from "../errors.ts";
import type { ModelEntry } from "../registry/registry.ts";
import type { Backend } from "../registry/types.ts";
import type { ServerContext } from "./context.ts";
import { createLmiFormatter, LMI_FORMATTERS, type LmiFormatterName } from "./format/lmi-format.ts";
import {
  CHAT_FORMATTERS,
  type ChatFormatterName,
  createChatFormatter,
  createCompletionFormatter,
} from "./format/openai-format.ts";
import type { FormatContext, OutputFormatter } from "./format/types.ts";
import { writeGeneration } from "./generation-writer.ts";
import { InputParsingError } from "./http-errors.ts";
import {
  type ChatPlan,
  type CompletionPlan,
  parseChatRequest,
  parseCompletionRequest,
} from "./lmi/openai-request.ts";

type EngineBackend = Extract<Backend, { kind: "engine" }>;
let engineSeq = 0;
const liveIds = new Set<string>();
export type RouteFlavor = "lmi" | "openai";

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Re-throws input errors in the route's convention. */
function asRouteError(err: unknown, flavor: RouteFlavor): unknown {
  if (flavor === "lmi" && err instanceof ValidationError) return new InputParsingError(err.message);
  return err;
}

/** `inputs` may be a function: a token-id prompt's text is then decoded only if a formatter reads it (echo,
 * details, an error body), not on every request's intake (~0.1 ms for 512 ids). */
function formatContext(
  req: FastifyRequest,
  entry: ModelEntry,
  inputs: string | (() => string),
  params: GenerationParams,
  extra: Partial<FormatContext> = {},
): FormatContext {
  const ctx: Omit<FormatContext, "inputs"> = {
    requestId: req.id,
    details: params.details,
    decoderInputDetails: params.decoderInputDetails,
    topNTokens: params.topNTokens,
    returnFullText: params.returnFullText,
    tgiCompat: entry.options.tgiCompat,
    model: entry.key,
    includeUsage: false,
    logprobs: false,
    ...extra,
  };
  if (typeof inputs === "string") return { ...ctx, inputs };
  let text: string | undefined;
  return Object.defineProperty(ctx, "inputs", {
    get: () => (text ??= inputs()),
    enumerable: true,
  }) as FormatContext;
}

/** An LMI body on /invocations, /predictions/{m}, /models/{m}/invoke. */
export async function invokeEngineLmi(
  ctx: ServerContext,
  req: FastifyRequest,
  reply: FastifyReply,
  entry: ModelEntry,
  backend: EngineBackend,
  body: unknown,
): Promise<unknown> {
  if (!isObj(body))
    throw new InputParsingError("The request body must be a JSON object with an 'inputs' field.");
  if (body.messages !== undefined) return invokeChat(ctx, req, reply, entry, backend, body, "lmi");
  if (body.inputs === undefined && body.prompt !== undefined) {
    return invokeCompletion(ctx, req, reply, entry, backend, body, "lmi");
  }
  if (body.adapters !== undefined) {
    throw new InputParsingError(
      "The 'adapters' field names LoRA adapters, which this server does not serve.",
    );
  }
  const inputs = body.inputs;
  if (typeof inputs !== "string") {
    throw new InputParsingError(
      Array.isArray(inputs)
        ? "The 'inputs' field must be a string: rolling batch takes one prompt per request."
        : "The 'inputs' field must be a string.",
    );
  }
  if (inputs === "") throw new InputParsingError("The 'inputs' field must be a non-empty string.");
  const rawParams = body.parameters ?? {};
  if (!isObj(rawParams)) throw new InputParsingError("The 'parameters' field must be an object.");
  const { output_formatter: reqFormatter, stream: paramStream, ...params } = rawParams;
  const streamField = body.stream ?? paramStream;
  if (streamField !== undefined && typeof streamField !== "boolean") {
    throw new InputParsingError("The 'stream' field must be a boolean.");
  }
  const configured = reqFormatter ?? entry.options.outputFormatter;
  if (configured !== null && configured !== undefined) {
    const ok = typeof configured === "string" && (LMI_FORMATTERS as readonly string[]).includes(configured);
    if (!ok) {
      throw new InputParsingError(
        `Unknown output_formatter '${String(configured)}' for a text request: use one of ${LMI_FORMATTERS.join(", ")}.`,
      );
    }
  }
  const name = (configured as LmiFormatterName | null) ?? "json";
  const stream = streamField === true || name === "jsonlines" || name === "sse" || name === "3p_stream";
  const chosen: LmiFormatterName =
    configured === null || configured === undefined
      ? stream
        ? entry.options.tgiCompat
          ? "sse"
          : "jsonlines"
        : "json"
      : name;
  let validated: GenerationParams;
  try {
    validated = backend.validateParameters(params);
  } catch (err) {
    throw asRouteError(err, "lmi");
  }
  const formatter = createLmiFormatter(chosen, stream, formatContext(req, entry, inputs, validated));
  return start(ctx, req, reply, entry, backend, inputs, validated, formatter);
}

async function start(
  ctx: ServerContext,
  req: FastifyRequest,
  reply: FastifyReply,
  entry: ModelEntry,
  backend: EngineBackend,
  prompt: string | { tokenIds: number[] },
  params: GenerationParams,
  formatter: OutputFormatter,
): Promise<unknown> {
  const releaseSlot = ctx.registry.acquire(entry);
  // The engine's request id is the request id (so engine logs and plans trace back to it), unless a
  // client reuses an x-request-id that is still running (retries): then it gets a unique suffix.
  let requestId = req.id;
  if (liveIds.has(requestId)) {
    engineSeq = (engineSeq + 1) % Number.MAX_SAFE_INTEGER;
    requestId = `${req.id}#${engineSeq}`;
  }
  liveIds.add(requestId);
  const release = () => {
    liveIds.delete(requestId);
    releaseSlot();
  };
  return writeGeneration(ctx, req, reply, {
    entry,
    engine: backend.engine,
    request: { requestId, prompt, params },
    formatter,
    release,
  });
}

/** A chat completions body (`messages`) on any inference route. */
export async function invokeChat(
  ctx: ServerContext,
  req: FastifyRequest,
  reply: FastifyReply,
  entry: ModelEntry,
  backend: EngineBackend,
  body: unknown,
  flavor: RouteFlavor,
): Promise<unknown> {
  let plan: ChatPlan;
  let params: GenerationParams;
  let promptText: string;
  try {
    plan = parseChatRequest(body);
    promptText = backend.engine.applyChatTemplate(plan.messages as ChatMessage[], {
      tools: plan.tools,
      addGenerationPrompt: true,
    });
    params = backend.validateParameters(plan.rawParams);
  } catch (err) {
    throw asRouteError(err, flavor);
  }
  const requested = isObj(body) && isObj(body.parameters) ? body.parameters.output_formatter : undefined;
  const configured = requested ?? entry.options.outputFormatter;
  let name: ChatFormatterName;
  if (typeof configured === "string" && (CHAT_FORMATTERS as readonly string[]).includes(configured)) {
    name = configured as ChatFormatterName;
  } else {
    // OpenAI clients need SSE on /v1; LMI's chat stream default is jsonlines (spec §3.7).
    name = plan.stream
      ? flavor === "openai" || entry.options.tgiCompat
        ? "sse_chat"
        : "jsonlines_chat"
      : "json_chat";
  }
  const fctx = formatContext(req, entry, promptText, params, {
    includeUsage: plan.includeUsage,
    logprobs: plan.logprobs,
    returnFullText: false,
  });
  const formatter = createChatFormatter(name, plan.stream, fctx);
  // The template already holds the special tokens the model expects; do not add them twice.
  const tokenIds = backend.engine.encode(promptText, false);
  return start(ctx, req, reply, entry, backend, { tokenIds }, params, formatter);
}

/** An OpenAI completions body (`prompt`). */
export async function invokeCompletion(
  ctx: ServerContext,
  req: FastifyRequest,
  reply: FastifyReply,
  entry: ModelEntry,
  backend: EngineBackend,
  body: unknown,
  flavor: RouteFlavor,
): Promise<unknown> {
  let plan: CompletionPlan;
  let params: GenerationParams;
  try {
    plan = parseCompletionRequest(body);
    params = backend.validateParameters(plan.rawParams);
  } catch (err) {
    throw asRouteError(err, flavor);
  }
  const ids = plan.prompt;
  const inputs = typeof ids === "string" ? ids : () => backend.engine.decode(ids, false);
  const fctx = formatContext(req, entry, inputs, params, {
    includeUsage: plan.includeUsage,
    logprobs: plan.logprobs,
    returnFullText: plan.echo,
  });
  const formatter = createCompletionFormatter(plan.stream, fctx);
  const prompt = typeof plan.prompt === "string" ? plan.prompt : { tokenIds: plan.prompt };
  return start(ctx, req, reply, entry, backend, prompt, params, formatter);
}
