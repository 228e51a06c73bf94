// Contiguous regions of KV token slots for the padded path: one region per sub-batch, first fit, and
// compaction that slides every region down when free space is fragmented. Pure bookkeeping; the
// caller moves the bytes. Invariant: regions never overlap and lie within [0, numSlots).

export interface ArenaRegion {
  id: number;
  base: number;
  size: number;
}

export class SlotArena {
  /** Sorted by base. */
  private regions: ArenaRegion[] = [];

  constructor(readonly numSlots: number) {
    if (!Number.isInteger(numSlots) || numSlots < 1) throw new Error(`bad KV slot count ${numSlots}`);
  }

  get used(): number {
    return this.regions.reduce((a, r) => a + r.size, 0);
  }

  get(id: number): ArenaRegion | undefined {
    return this.regions.find((r) => r.id === id);
  }

  /** First fit; null when no gap is large enough (compact() may make one). */
  alloc(id: number, size: number): ArenaRegion | null {
    if (!Number.isInteger(size) || size < 1) throw new Error(`bad KV region size ${size}`);
    if (this.get(id)) throw new Error(`KV region ${id} already allocated`);
    let at = 0;
    let i = 0;
    for (; i <= this.regions.length; i++) {
      const end = i < this.regions.length ? this.regions[i].base : this.numSlots;
      if (end - at >= size) break;
      if (i < this.regions.length) at = this.regions[i].base + this.regions[i].size;
    }
    if (i > this.regions.length) return null;
    const r = { id, base: at, size };
    this.regions.splice(i, 0, r);
    return r;
  }

  free(id: number): void {
    const i = this.regions.findIndex((r) => r.id === id);
    if (i < 0) throw new Error(`KV region ${id} is not allocated`);
    this.regions.splice(i, 1);
  }

  /**
   * Slides regions towards slot 0, lowest first, so each move goes down (an overlapping copy is safe
   * with copyWithin). move(region, newBase) must copy the slots before the region's base changes.
   */
  compact(move: (r: ArenaRegion, newBase: number) => void): void {
    let at = 0;
    for (const r of this.regions) {
      if (r.base !== at) {
        move(r, at);
        r.base = at;
      }
      at += r.size;
    }
  }
}
