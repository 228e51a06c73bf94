// Sampling settings for executor and engine tests: the neutral ones (greedy, no penalty, bias or filter,
// seed 0, no eos) with the fields a test cares about overridden. One place, so a field added to
// SamplingSettings gets its neutral value once.
import type { SamplingSettings } from "../types.ts";

export function neutralSamplingSettings(over: Partial<SamplingSettings> = {}): SamplingSettings {
  return {
    strategy: "greedy",
    temperature: 1,
    topK: 0,
    topP: 1,
    typicalP: 1,
    minP: 0,
    repetitionPenalty: 1,
    presencePenalty: 0,
    frequencyPenalty: 0,
    logitBias: {},
    seed: 0,
    penaltyAlpha: 0,
    numTopLogprobs: 0,
    promptLogprobs: false,
    minTokens: 0,
    eosTokenIds: [],
    ignoreEos: false,
    ...over,
  };
}
