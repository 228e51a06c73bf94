// Serves one inference request on a Python-handler model (rolling_batch=disable or a custom
// model.py): the HTTP request becomes a DjlInput as DJL builds it (spec §2.2: headers as properties
// plus requestId, query parameters as content entries, the body as `data`), and the DjlOutput's
// code, properties and bytes go back unchanged; a streamed output is written chunk by chunk.

import type { FastifyReply, FastifyRequest } from "fastify";
import type { DjlInput, DjlOutput } from "../handler/protocol.ts";
import type { ModelEntry } from "../registry/registry.ts";
import type { Backend } from "../registry/types.ts";
import type { ServerContext } from "./context.ts";

type HandlerBackend = Extract<Backend, { kind: "handler" }>;
const enc = new TextEncoder();

export function toDjlInput(req: FastifyRequest): DjlInput {
  const properties: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) {
    if (v === undefined) continue;
    properties[k] = Array.isArray(v) ? v.join(",") : v;
  }
  const custom = properties["x-amzn-sagemaker-custom-attributes"];
  if (custom) {
    for (const part of custom.split(";")) {
      const eq = part.indexOf("=");
      if (eq > 0) properties[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
    }
  }
  properties.requestId = req.id;
  const content: DjlInput["content"] = [];
  const q = req.url.indexOf("?");
  if (q >= 0) {
    for (const [k, v] of new URLSearchParams(req.url.slice(q + 1)))
      content.push({ key: k, value: enc.encode(v) });
  }
  const body = req.body as Buffer | undefined;
  content.push({
    key: "data",
    value: body ? new Uint8Array(body.buffer, body.byteOffset, body.byteLength) : new Uint8Array(),
  });
  return { properties, content };
}

export async function invokeHandler(
  ctx: ServerContext,
  req: FastifyRequest,
  reply: FastifyReply,
  entry: ModelEntry,
  backend: HandlerBackend,
): Promise<unknown> {
  if (req.headers.handler !== undefined && process.env.ALLOW_REQUEST_HANDLER_OVERRIDE !== "true") {
    reply.header("connection", "close");
    return reply
      .code(400)
      .type("application/json")
      .send(
        `${JSON.stringify({ code: 400, type: "BadRequestException", message: "The handler can't be overridden in a request" }, null, 2)}\n`,
      );
  }
  const release = ctx.registry.acquire(entry);
  const abort = new AbortController();
  const res = reply.raw;
  const onClose = () => {
    if (!res.writableFinished) abort.abort(new Error("client disconnected"));
  };
  res.once("close", onClose);
  try {
    const out = await backend.handler.invoke(toDjlInput(req), abort.signal);
    return await writeDjlOutput(reply, out);
  } finally {
    release();
    res.off("close", onClose);
  }
}

async function writeDjlOutput(reply: FastifyReply, out: DjlOutput): Promise<unknown> {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(out.properties)) {
    // Per-request bookkeeping properties are not HTTP headers.
    if (k === "requestId" || k.startsWith("batch_")) continue;
    headers[k.toLowerCase()] = v;
  }
  if (out.code >= 400) headers.connection = "close";
  if (!out.stream) {
    const item = out.content.find((c) => c.key === "data") ?? out.content[0];
    reply.code(out.code).headers(headers);
    return reply.send(item ? Buffer.from(item.value) : "");
  }
  const res = reply.raw;
  reply.hijack();
  const base: Record<string, string> = {};
  for (const [k, v] of Object.entries(reply.getHeaders())) if (v !== undefined) base[k] = String(v);
  res.writeHead(out.code, { ...base, ...headers });
  try {
    for await (const chunk of out.stream) {
      if (res.destroyed) break;
      if (!res.write(chunk)) await new Promise((r) => res.once("drain", r));
    }
  } catch {
    // The stream broke (worker died, chunk timeout). Its bytes are the handler's own format, so there
    // is no error line to add: dropping the connection without the final chunk is what tells the
    // client the response is incomplete (DJL drops it too). Ending it cleanly would be a silent cut.
    res.destroy();
    return undefined;
  } finally {
    if (!res.writableEnded && !res.destroyed) res.end();
  }
  return undefined;
}
