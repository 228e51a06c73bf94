import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { bf16ToF32, f16ToF32, readModelTensorIndex, readTensorF32 } from "./safetensors.ts";
import { f32ToBf16Bits, f32ToF16Bits, writeSafetensors } from "./safetensors-writer.ts";

test("f16 bits: every non-NaN pattern survives f16 -> f32 -> f16", () => {
  const all = new Uint16Array(65536);
  for (let i = 0; i < 65536; i++) all[i] = i;
  const f = f16ToF32(all);
  for (let i = 0; i < 65536; i++) {
    if (Number.isNaN(f[i])) continue;
    assert.equal(f32ToF16Bits(f[i]), i, `pattern ${i.toString(16)}`);
  }
});

test("known half-precision encodings", () => {
  assert.equal(f32ToF16Bits(1), 0x3c00);
  assert.equal(f32ToF16Bits(65504), 0x7bff);
  assert.equal(f32ToF16Bits(2 ** -24), 0x0001);
  assert.equal(f32ToF16Bits(-2), 0xc000);
  assert.equal(f32ToF16Bits(0.1), 0x2e66);
  assert.equal(f32ToF16Bits(1e6), 0x7c00);
  assert.equal(f32ToBf16Bits(1), 0x3f80);
  assert.equal(f32ToBf16Bits(0.1), 0x3dcd);
  assert.equal(f32ToBf16Bits(-3.5), 0xc060);
  // Ties round to even: 1 + 2^-8 lies halfway between two bf16 values.
  assert.equal(f32ToBf16Bits(1 + 2 ** -8), 0x3f80);
  assert.equal(f32ToBf16Bits(1 + 3 * 2 ** -8), 0x3f82);
  assert.deepEqual(Array.from(bf16ToF32(new Uint16Array([0x3f80, 0xc060, 0x7f80]))), [1, -3.5, Infinity]);
  assert.ok(Number.isNaN(f16ToF32(new Uint16Array([0x7e00]))[0]));
});

test("write then read F32/F16/BF16 tensors, single file and sharded", () => {
  const dir = mkdtempSync(join(tmpdir(), "st-"));
  const vals = [0.5, -1.25, 3, 1e-3, 65504, -0];
  writeSafetensors(
    join(dir, "model.safetensors"),
    {
      a: { dtype: "F32", shape: [2, 3], data: vals },
      b: { dtype: "F16", shape: [6], data: vals },
      c: { dtype: "BF16", shape: [3, 2], data: vals },
      ids: { dtype: "I64", shape: [2], data: [7, 9] },
    },
    { format: "pt" },
  );
  const idx = readModelTensorIndex(dir);
  assert.deepEqual(idx.get("a")?.shape, [2, 3]);
  assert.equal(idx.get("ids")?.dtype, "I64");
  assert.deepEqual(Array.from(readTensorF32(idx.get("a")!)), Array.from(Float32Array.from(vals)));
  const b = readTensorF32(idx.get("b")!);
  assert.equal(b[3], f16ToF32(new Uint16Array([f32ToF16Bits(1e-3)]))[0]);
  assert.equal(b[4], 65504);
  const c = readTensorF32(idx.get("c")!);
  assert.equal(c[1], -1.25);
  assert.equal(c[4], 65536); // 65504 rounds to 65536 in bf16

  const sharded = mkdtempSync(join(tmpdir(), "st-"));
  writeSafetensors(join(sharded, "m-1.safetensors"), { x: { dtype: "F32", shape: [1], data: [1] } });
  writeSafetensors(join(sharded, "m-2.safetensors"), { y: { dtype: "BF16", shape: [1], data: [2] } });
  writeFileSync(
    join(sharded, "model.safetensors.index.json"),
    JSON.stringify({ weight_map: { x: "m-1.safetensors", y: "m-2.safetensors" } }),
  );
  const sidx = readModelTensorIndex(sharded);
  assert.equal(readTensorF32(sidx.get("y")!)[0], 2);
  assert.equal(readTensorF32(sidx.get("x")!)[0], 1);
});

test("a corrupt header is rejected", () => {
  const dir = mkdtempSync(join(tmpdir(), "st-"));
  const hdr = Buffer.from(JSON.stringify({ t: { dtype: "F32", shape: [4], data_offsets: [0, 8] } }));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(hdr.length));
  writeFileSync(join(dir, "model.safetensors"), Buffer.concat([len, hdr, Buffer.alloc(8)]));
  assert.throws(() => readModelTensorIndex(dir), /does not match its shape/);
});
