// Token-level stop conditions, checked after each generated token: eos, user stop token ids,
// max_new_tokens and the model's length limit. Stop *strings* need text and are checked by the
// output processor. min_new_tokens suppresses eos/stop-token stops (the executor also masks eos).

import type { FinishReason } from "../protocol.ts";
import type { Request } from "../request.ts";

export function checkStop(req: Request, lastTokenId: number, maxModelLen: number): FinishReason | null {
  const numOutput = req.numOutputTokens;
  if (numOutput >= req.sampling.minTokens) {
    if (!req.sampling.ignoreEos && req.sampling.eosTokenIds.includes(lastTokenId)) return "eos_token";
    // A user stop token is a stop sequence of one token (TGI and LMI name the reason so).
    if (req.stopTokenIds.includes(lastTokenId)) return "stop_sequence";
  }
  if (numOutput >= req.maxTokens || req.numTokens >= maxModelLen) return "length";
  return null;
}
