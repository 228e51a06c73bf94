// Stop sequences on generated text, found even when they span several tokens (vLLM
// check_stop_strings): only the region the new text could complete is searched. While streaming,
// the last (longest stop - 1) characters are held back, since they may be the start of a stop
// sequence that the next token completes; the held text is released when the request finishes.

export class StopStrings {
  private readonly stops: readonly string[];
  private readonly includeInOutput: boolean;
  /** Characters to withhold from streamed text until they cannot start a stop sequence. */
  readonly holdBack: number;

  constructor(stops: readonly string[], includeInOutput: boolean) {
    this.stops = stops.filter((s) => s.length > 0);
    this.includeInOutput = includeInOutput;
    this.holdBack =
      includeInOutput || this.stops.length === 0 ? 0 : Math.max(...this.stops.map((s) => s.length)) - 1;
  }

  get isEmpty(): boolean {
    return this.stops.length === 0;
  }

  /**
   * Looks for a stop sequence that ends within the last newCharCount characters of text. Returns the
   * length to cut text to (the earliest match wins), or null when there is none.
   */
  check(text: string, newCharCount: number): number | null {
    let best: number | null = null;
    for (const stop of this.stops) {
      const from = Math.max(0, text.length - newCharCount - stop.length + 1);
      const at = text.indexOf(stop, from);
      if (at < 0) continue;
      const cut = this.includeInOutput ? at + stop.length : at;
      if (best === null || cut < best) best = cut;
    }
    return best;
  }
}
