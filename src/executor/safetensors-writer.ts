// Writes safetensors files (used by tests to build small random models) and rounds f32 values to
// f16/bf16 with round-to-nearest-even, so tests can produce bit-exact half-precision fixtures.
// Invariant: the header is padded with spaces to a multiple of 8 bytes, as the Rust writer does.
import { writeFileSync } from "node:fs";

export interface TensorToWrite {
  dtype: "F32" | "F16" | "BF16" | "I64";
  shape: number[];
  /** Values; converted to dtype on write (I64 takes integers). */
  data: ArrayLike<number>;
}

// One shared scratch word: these run per element over whole checkpoints, so no allocation per call.
const scratchF = new Float32Array(1);
const scratchU = new Uint32Array(scratchF.buffer);

export function f32ToBf16Bits(x: number): number {
  scratchF[0] = x;
  const u = scratchU[0];
  if ((u & 0x7f800000) === 0x7f800000 && (u & 0x7fffff) !== 0) return ((u >>> 16) | 0x40) & 0xffff; // NaN stays NaN
  const rounded = u + 0x7fff + ((u >>> 16) & 1);
  return (rounded >>> 16) & 0xffff;
}

export function f32ToF16Bits(x: number): number {
  scratchF[0] = x;
  const u = scratchU[0];
  const s = (u >>> 16) & 0x8000;
  const e = (u >>> 23) & 0xff;
  let m = u & 0x7fffff;
  if (e === 0xff) return s | 0x7c00 | (m ? 0x200 : 0);
  let ee = e - 127 + 15;
  if (ee >= 31) return s | 0x7c00;
  if (ee <= 0) {
    if (ee < -10) return s;
    m |= 0x800000;
    const shift = 14 - ee;
    let hm = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && hm & 1)) hm++;
    return s | hm;
  }
  let hm = m >>> 13;
  const rem = m & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && hm & 1)) {
    hm++;
    if (hm === 0x400) {
      hm = 0;
      ee++;
      if (ee >= 31) return s | 0x7c00;
    }
  }
  return s | (ee << 10) | hm;
}

function encode(t: TensorToWrite): Buffer {
  const n = t.data.length;
  const numel = t.shape.reduce((a, b) => a * b, 1);
  if (numel !== n) throw new Error(`tensor data has ${n} values but shape ${JSON.stringify(t.shape)}`);
  if (t.dtype === "F32") return Buffer.from(Float32Array.from(t.data).buffer);
  if (t.dtype === "I64") return Buffer.from(BigInt64Array.from(Array.from(t.data, (v) => BigInt(v))).buffer);
  const u = new Uint16Array(n);
  const conv = t.dtype === "BF16" ? f32ToBf16Bits : f32ToF16Bits;
  for (let i = 0; i < n; i++) u[i] = conv(t.data[i]);
  return Buffer.from(u.buffer);
}

export function writeSafetensors(
  file: string,
  tensors: Record<string, TensorToWrite>,
  metadata?: Record<string, string>,
): void {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  const parts: Buffer[] = [];
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const b = encode(t);
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + b.length] };
    parts.push(b);
    offset += b.length;
  }
  let json = JSON.stringify(header);
  while ((8 + Buffer.byteLength(json)) % 8 !== 0) json += " ";
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  writeFileSync(file, Buffer.concat([len, Buffer.from(json, "utf8"), ...parts]));
}
