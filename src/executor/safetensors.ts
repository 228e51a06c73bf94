// Reads Hugging Face safetensors files (single file or sharded via model.safetensors.index.json) and
// converts F32/F16/BF16 tensors to Float32Array. Invariants: every tensor gets its own aligned buffer
// (a fresh ArrayBuffer), shapes come from the header unchanged, and unsupported dtypes fail by name.
import { closeSync, existsSync, openSync, readFileSync, readSync } from "node:fs";
import { join } from "node:path";

export type SafetensorsDtype = "F32" | "F16" | "BF16" | "I64" | "I32" | "U8" | "F64";

export interface TensorInfo {
  dtype: SafetensorsDtype;
  shape: number[];
  /** Byte range inside the file's data section. */
  begin: number;
  end: number;
  file: string;
}

const BYTES: Record<SafetensorsDtype, number> = { F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, U8: 1, F64: 8 };

/** Parses one file's header: tensor name -> info (the __metadata__ entry is skipped). */
export function readSafetensorsHeader(file: string): Map<string, TensorInfo> {
  const fd = openSync(file, "r");
  try {
    const lenBuf = Buffer.alloc(8);
    readSync(fd, lenBuf, 0, 8, 0);
    const headerLen = Number(lenBuf.readBigUInt64LE(0));
    const hdr = Buffer.alloc(headerLen);
    readSync(fd, hdr, 0, headerLen, 8);
    const json = JSON.parse(hdr.toString("utf8")) as Record<string, unknown>;
    const out = new Map<string, TensorInfo>();
    for (const [name, v] of Object.entries(json)) {
      if (name === "__metadata__") continue;
      const t = v as { dtype: SafetensorsDtype; shape: number[]; data_offsets: [number, number] };
      if (!(t.dtype in BYTES))
        throw new Error(`safetensors ${file}: tensor ${name} has unsupported dtype ${t.dtype}`);
      const numel = t.shape.reduce((a, b) => a * b, 1);
      const [b, e] = t.data_offsets;
      if (e - b !== numel * BYTES[t.dtype]) {
        throw new Error(`safetensors ${file}: tensor ${name} byte range does not match its shape`);
      }
      out.set(name, {
        dtype: t.dtype,
        shape: t.shape,
        begin: 8 + headerLen + b,
        end: 8 + headerLen + e,
        file,
      });
    }
    return out;
  } finally {
    closeSync(fd);
  }
}

/** All tensors of a model directory: model.safetensors, or the shards named by the index file. */
export function readModelTensorIndex(modelDir: string): Map<string, TensorInfo> {
  const indexPath = join(modelDir, "model.safetensors.index.json");
  if (existsSync(indexPath)) {
    const index = JSON.parse(readFileSync(indexPath, "utf8")) as { weight_map: Record<string, string> };
    const out = new Map<string, TensorInfo>();
    for (const shard of new Set(Object.values(index.weight_map))) {
      for (const [k, v] of readSafetensorsHeader(join(modelDir, shard))) out.set(k, v);
    }
    return out;
  }
  const single = join(modelDir, "model.safetensors");
  if (!existsSync(single))
    throw new Error(`no model.safetensors or model.safetensors.index.json in ${modelDir}`);
  return readSafetensorsHeader(single);
}

/** Reads a tensor's raw bytes into a fresh (aligned) ArrayBuffer. */
export function readTensorBytes(info: TensorInfo): ArrayBuffer {
  const len = info.end - info.begin;
  const ab = new ArrayBuffer(len);
  const fd = openSync(info.file, "r");
  try {
    let done = 0;
    while (done < len) {
      const n = readSync(fd, new Uint8Array(ab, done), 0, len - done, info.begin + done);
      if (n <= 0) throw new Error(`safetensors ${info.file}: file ends inside a tensor`);
      done += n;
    }
  } finally {
    closeSync(fd);
  }
  return ab;
}

let f16Table: Float32Array | null = null;

function f16ToF32Bits(h: number): number {
  const s = (h & 0x8000) << 16;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) {
    if (m === 0) return s;
    // Subnormal: value = m * 2^-24, renormalised into an f32 exponent.
    let mm = m;
    let ee = 113; // 127 - 15 + 1
    while ((mm & 0x400) === 0) {
      mm <<= 1;
      ee--;
    }
    return s | (ee << 23) | ((mm & 0x3ff) << 13);
  }
  if (e === 31) return s | 0x7f800000 | (m << 13);
  return s | ((e + 112) << 23) | (m << 13);
}

/** The f16 -> f32 lookup table: Node 20 has no Float16Array, and a table is the fastest decode. */
function getF16Table(): Float32Array {
  if (f16Table) return f16Table;
  const bits = new Uint32Array(65536);
  for (let h = 0; h < 65536; h++) bits[h] = f16ToF32Bits(h);
  f16Table = new Float32Array(bits.buffer);
  return f16Table;
}

export function f16ToF32(src: Uint16Array, dst: Float32Array = new Float32Array(src.length)): Float32Array {
  const t = getF16Table();
  for (let i = 0; i < src.length; i++) dst[i] = t[src[i]];
  return dst;
}

export function bf16ToF32(src: Uint16Array, dst: Float32Array = new Float32Array(src.length)): Float32Array {
  const u = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  for (let i = 0; i < src.length; i++) u[i] = src[i] << 16;
  return dst;
}

/** Reads a floating-point tensor and returns it as f32 (a copy; the file dtype is converted exactly). */
export function readTensorF32(info: TensorInfo): Float32Array {
  const ab = readTensorBytes(info);
  switch (info.dtype) {
    case "F32":
      return new Float32Array(ab);
    case "F64":
      return Float32Array.from(new Float64Array(ab));
    case "F16":
      return f16ToF32(new Uint16Array(ab));
    case "BF16":
      return bf16ToF32(new Uint16Array(ab));
    default:
      throw new Error(`tensor in ${info.file} has dtype ${info.dtype}, not a float type`);
  }
}
