// Frames of the executor protocol (python/lmi_executor/protocol.py is the other side): u32 big-endian
// body length, u32 big-endian header length, a UTF-8 JSON header, then an optional binary payload.
// Invariant: FrameDecoder yields only whole frames, in order, however the stream is chunked.

export interface Frame {
  header: Record<string, unknown>;
  payload: Buffer;
}

export const MAX_FRAME_BYTES = 1 << 30;

export function encodeFrame(header: unknown, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.from(JSON.stringify(header), "utf8");
  const prefix = Buffer.alloc(8);
  prefix.writeUInt32BE(4 + head.length + payload.length, 0);
  prefix.writeUInt32BE(head.length, 4);
  return Buffer.concat([prefix, head, payload]);
}

export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;

  /** Adds bytes from the socket and returns every frame they complete. */
  push(chunk: Buffer): Frame[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const frames: Frame[] = [];
    for (;;) {
      if (this.buffered < 4) break;
      const buf = this.coalesce();
      const bodyLen = buf.readUInt32BE(0);
      if (bodyLen < 4 || bodyLen > MAX_FRAME_BYTES) throw new Error(`bad executor frame length ${bodyLen}`);
      if (this.buffered < 4 + bodyLen) break;
      const headLen = buf.readUInt32BE(4);
      if (4 + headLen > bodyLen)
        throw new Error(`executor frame header length ${headLen} exceeds body ${bodyLen}`);
      const header = JSON.parse(buf.toString("utf8", 8, 8 + headLen)) as Record<string, unknown>;
      const payload = Buffer.from(buf.subarray(8 + headLen, 4 + bodyLen));
      frames.push({ header, payload });
      const rest = buf.subarray(4 + bodyLen);
      this.chunks = rest.length > 0 ? [rest] : [];
      this.buffered = rest.length;
    }
    return frames;
  }

  private coalesce(): Buffer {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0];
  }
}
