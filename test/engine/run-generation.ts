// One generation through an engine's public API, collected: token ids, every delta, and the last one.
import type { LlmEngine, RequestOutput } from "../../src/engine/protocol.ts";
import { validateParameters } from "../../src/engine/sampling-params.ts";

export async function runGeneration(
  engine: LlmEngine,
  id: string,
  prompt: string,
  raw: Record<string, unknown>,
  signal?: AbortSignal,
) {
  const outs: RequestOutput[] = [];
  for await (const o of engine.generate(
    { requestId: id, prompt, params: validateParameters(raw).params },
    signal,
  )) {
    outs.push(o);
  }
  return { ids: outs.flatMap((o) => o.tokens.map((t) => t.id)), last: outs.at(-1)!, outs };
}
