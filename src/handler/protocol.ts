// The DJL handler path as the HTTP layer sees it (engine=Python with a model.py, or rolling_batch=disable):
// an HTTP request becomes a DjlInput (spec §2.2), the Python worker answers a DjlOutput (spec §5.2),
// whose code, properties and body go back to the client unchanged (streams as chunked responses).

export interface DjlInput {
  /** HTTP headers (original names) plus `requestId`; lookups on the Python side are case-insensitive. */
  properties: Record<string, string>;
  /** Query parameters and the body (key "data"), or form fields; order kept, keys may repeat. */
  content: Array<{ key: string; value: Uint8Array }>;
}

export interface DjlOutput {
  code: number;
  message: string;
  properties: Record<string, string>;
  /** Non-streaming contents, in order (key, bytes). */
  content: Array<{ key: string; value: Uint8Array }>;
  /** Streaming body, when the handler returned a generator; chunks are passed through as they come. */
  stream?: AsyncIterable<Uint8Array>;
}

/** A model served by Python workers: the server sends one request, the pool batches and answers. */
export interface HandlerModel {
  invoke(input: DjlInput, signal?: AbortSignal): Promise<DjlOutput>;
}
