// DJL binary protocol framing (spec §5.2), the TypeScript side: encode an Input frame, decode an Output
// frame (plain, or a stream of `int8 more + int32 len + bytes` chunks) from a socket byte stream.
// Invariants: big-endian; utf8 = int32 length (-1 = null); one frame in flight per connection, so a
// FrameReader is consumed by exactly one decoder at a time and a stream must be drained before the next.

import type { DjlInput, DjlOutput } from "./protocol.ts";

/** MAX_NETTY_BUFFER_SIZE default: one content item may not be larger (spec §5.2). */
export const MAX_ITEM_SIZE = 20 * 1024 * 1024;

export class FramingError extends Error {}

function utf8(value: string | null): Buffer {
  if (value === null) {
    const b = Buffer.alloc(4);
    b.writeInt32BE(-1);
    return b;
  }
  const raw = Buffer.from(value, "utf8");
  const head = Buffer.alloc(4);
  head.writeInt32BE(raw.length);
  return Buffer.concat([head, raw]);
}

function int16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeInt16BE(n);
  return b;
}

function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
}

/** Encodes an Input frame: int16 n + (utf8 k, utf8 v)*, int16 m + (utf8 k, int32 len, bytes)*. */
export function encodeInput(input: DjlInput): Buffer {
  const props = Object.entries(input.properties);
  if (props.length > 0x7fff || input.content.length > 0x7fff) {
    throw new FramingError("an Input may carry at most 32767 properties and 32767 content items");
  }
  const parts: Buffer[] = [int16(props.length)];
  for (const [k, v] of props) parts.push(utf8(k), utf8(v ?? ""));
  parts.push(int16(input.content.length));
  for (const { key, value } of input.content) {
    if (value.byteLength > MAX_ITEM_SIZE) {
      throw new FramingError(
        `content item '${key}' is ${value.byteLength} bytes, over the ${MAX_ITEM_SIZE} limit`,
      );
    }
    parts.push(utf8(key ?? "data"), int32(value.byteLength), Buffer.from(value));
  }
  return Buffer.concat(parts);
}

/** Buffers socket data and serves exact-length reads; fails pending and later reads once closed. */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private waiter: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | null = null;
  private closedWith: Error | null = null;

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    this.serve();
  }

  /** No more data will come; reads beyond what is buffered fail with `err`. */
  close(err: Error): void {
    if (!this.closedWith) this.closedWith = err;
    this.serve();
  }

  get bufferedBytes(): number {
    return this.buffered;
  }

  read(n: number): Promise<Buffer> {
    if (this.waiter) throw new FramingError("FrameReader: concurrent reads are a protocol bug");
    return new Promise((resolve, reject) => {
      this.waiter = { n, resolve, reject };
      this.serve();
    });
  }

  private serve(): void {
    const w = this.waiter;
    if (!w) return;
    if (this.buffered >= w.n) {
      this.waiter = null;
      w.resolve(this.take(w.n));
    } else if (this.closedWith) {
      this.waiter = null;
      w.reject(this.closedWith);
    }
  }

  private take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0];
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      const all = Buffer.concat(this.chunks);
      out = all.subarray(0, n);
      this.chunks = all.length > n ? [all.subarray(n)] : [];
    }
    this.buffered -= n;
    return out;
  }
}

async function readUtf8(r: FrameReader): Promise<string | null> {
  const len = (await r.read(4)).readInt32BE();
  if (len < 0) return null;
  if (len > MAX_ITEM_SIZE) throw new FramingError(`string of ${len} bytes exceeds the frame limit`);
  return (await r.read(len)).toString("utf8");
}

async function readLength(r: FrameReader, what: string): Promise<number> {
  const len = (await r.read(4)).readInt32BE();
  if (len < 0 || len > MAX_ITEM_SIZE) throw new FramingError(`${what} has invalid length ${len}`);
  return len;
}

export interface DecodedOutput {
  output: DjlOutput;
  /** Resolves when the whole frame (including every stream chunk) has been read off the reader. */
  done: Promise<void>;
}

/**
 * Decodes one Output frame. For a stream, `output.stream` yields chunks as they arrive and `done`
 * settles after the last one; the stream is consumed eagerly into a queue so that a slow HTTP client
 * never stalls the worker connection.
 */
export async function readOutput(r: FrameReader): Promise<DecodedOutput> {
  const code = (await r.read(2)).readInt16BE();
  const message = (await readUtf8(r)) ?? "";
  const properties: Record<string, string> = {};
  const numProps = (await r.read(2)).readInt16BE();
  for (let i = 0; i < numProps; i++) {
    const k = (await readUtf8(r)) ?? "";
    properties[k] = (await readUtf8(r)) ?? "";
  }
  const numContent = (await r.read(2)).readInt16BE();
  if (numContent >= 0) {
    const content: DjlOutput["content"] = [];
    for (let i = 0; i < numContent; i++) {
      const key = (await readUtf8(r)) ?? "data";
      const len = await readLength(r, `content item '${key}'`);
      content.push({ key, value: await r.read(len) });
    }
    return { output: { code, message, properties, content }, done: Promise.resolve() };
  }
  if (numContent !== -1) throw new FramingError(`invalid content count ${numContent}`);
  const queue = new ChunkQueue();
  const done = (async () => {
    for (;;) {
      const more = (await r.read(1)).readInt8();
      const len = await readLength(r, "stream chunk");
      const data = await r.read(len);
      if (more !== 0) {
        queue.push(data);
        continue;
      }
      if (len > 0) queue.push(data);
      queue.end();
      return;
    }
  })();
  done.catch((e) => queue.fail(e instanceof Error ? e : new Error(String(e))));
  return { output: { code, message, properties, content: [], stream: queue }, done };
}

/** A single-consumer async queue of chunks with an end or an error. */
export class ChunkQueue implements AsyncIterable<Uint8Array> {
  private items: Uint8Array[] = [];
  private ended = false;
  private error: Error | null = null;
  private wake: (() => void) | null = null;

  push(chunk: Uint8Array): void {
    this.items.push(chunk);
    this.notify();
  }
  end(): void {
    this.ended = true;
    this.notify();
  }
  fail(err: Error): void {
    if (this.ended) return;
    this.error = err;
    this.ended = true;
    this.notify();
  }
  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    for (;;) {
      if (this.items.length > 0) {
        yield this.items.shift()!;
        continue;
      }
      if (this.error) throw this.error;
      if (this.ended) return;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }
}

/** Decodes a complete Output frame held in memory (tests, golden frames); streams are collected. */
export async function decodeOutputBytes(buf: Uint8Array): Promise<DjlOutput & { chunks?: Uint8Array[] }> {
  const r = new FrameReader();
  r.push(Buffer.from(buf));
  r.close(new FramingError("truncated Output frame"));
  const { output, done } = await readOutput(r);
  if (!output.stream) {
    await done;
    if (r.bufferedBytes !== 0) throw new FramingError(`${r.bufferedBytes} trailing bytes after the frame`);
    return output;
  }
  const chunks: Uint8Array[] = [];
  for await (const c of output.stream) chunks.push(c);
  await done;
  return { ...output, stream: undefined, chunks };
}
