// Paged KV cache of the CPU executor: per layer, K and V for numBlocks*blockSize token slots, each slot
// holding numKvHeads*headDim floats. Slot of position p in a request = blockIds[floor(p/bs)]*bs + p%bs
// (the GPU executor uses the same mapping). Extra scratch blocks past numBlocks belong to the executor
// (contrastive search's look-ahead) and are never handed out by the engine.

export class KvCache {
  readonly k: Float32Array[];
  readonly v: Float32Array[];
  /** floats per slot per layer (K or V). */
  readonly slotWidth: number;

  /** storage: at least floatsNeeded(...) floats, from the compute backend so kernels can read it. */
  constructor(
    readonly numLayers: number,
    readonly numBlocks: number,
    readonly blockSize: number,
    numKvHeads: number,
    headDim: number,
    readonly numScratchBlocks: number,
    storage: Float32Array,
  ) {
    this.slotWidth = numKvHeads * headDim;
    const floats = (numBlocks + numScratchBlocks) * blockSize * this.slotWidth;
    if (storage.length < 2 * numLayers * floats) {
      throw new Error(
        `KV cache of ${numBlocks} blocks needs ${2 * numLayers * floats * 4} bytes; ${storage.length * 4} reserved`,
      );
    }
    this.k = [];
    this.v = [];
    for (let l = 0; l < numLayers; l++) {
      this.k.push(storage.subarray(2 * l * floats, (2 * l + 1) * floats));
      this.v.push(storage.subarray((2 * l + 1) * floats, (2 * l + 2) * floats));
    }
  }

  static floatsNeeded(
    numLayers: number,
    numBlocks: number,
    blockSize: number,
    slotWidth: number,
    numScratch: number,
  ) {
    return 2 * numLayers * (numBlocks + numScratch) * blockSize * slotWidth;
  }

  /** Block id of the i-th scratch block. */
  scratchBlock(i: number): number {
    if (i >= this.numScratchBlocks) throw new Error(`KV scratch block ${i} out of range`);
    return this.numBlocks + i;
  }

  /** Copies every layer's K/V of `count` leading slots of block `src` into block `dst`. */
  copyBlockPrefix(src: number, dst: number, count: number): void {
    const w = this.slotWidth;
    const s = src * this.blockSize * w;
    const d = dst * this.blockSize * w;
    for (let l = 0; l < this.numLayers; l++) {
      this.k[l].copyWithin(d, s, s + count * w);
      this.v[l].copyWithin(d, s, s + count * w);
    }
  }

  static bytesPerBlock(numLayers: number, blockSize: number, numKvHeads: number, headDim: number): number {
    return 2 * numLayers * blockSize * numKvHeads * headDim * 4;
  }
}

/** Slot index of every position in [0, end) for a block table. */
export function slotsFor(blockTable: ArrayLike<number>, blockSize: number, end: number): Int32Array {
  const slots = new Int32Array(end);
  for (let p = 0; p < end; p++) {
    const b = blockTable[Math.floor(p / blockSize)];
    if (b === undefined) throw new Error(`block table too short for position ${p}`);
    slots[p] = b * blockSize + (p % blockSize);
  }
  return slots;
}
