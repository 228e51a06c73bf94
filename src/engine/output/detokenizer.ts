// Incremental detokenization (the TGI/vLLM prefix-offset technique): decode a short window of
// tokens twice, with and without the newest ones, and emit the difference. Text is held back while
// the window ends in U+FFFD, i.e. while a multi-byte UTF-8 character is still split across tokens, so
// no broken character is ever emitted. The window starts in the prompt tail so that tokenizers whose
// decoding depends on the previous token (SentencePiece leading spaces) get the same text as a full decode.

/** How many prompt tokens seed the window (vLLM INITIAL_INCREMENTAL_DETOKENIZATION_OFFSET). */
const INITIAL_OFFSET = 5;
const REPLACEMENT = "\uFFFD";

export class IncrementalDetokenizer {
  private readonly ids: number[];
  private prefixOffset: number;
  private readOffset: number;

  constructor(
    private readonly decode: (ids: number[]) => string,
    promptTokenIds: readonly number[],
  ) {
    const tail = promptTokenIds.slice(-INITIAL_OFFSET);
    this.ids = [...tail];
    this.prefixOffset = 0;
    this.readOffset = tail.length;
  }

  /** Adds one generated token; returns the text it completes ("" while a character is incomplete). */
  push(tokenId: number): string {
    this.ids.push(tokenId);
    const prefixText = this.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const newText = this.decode(this.ids.slice(this.prefixOffset));
    if (newText.length <= prefixText.length || newText.endsWith(REPLACEMENT)) return "";
    this.prefixOffset = this.readOffset;
    this.readOffset = this.ids.length;
    return newText.slice(prefixText.length);
  }
}
