// A destination file written by ranged parts in any order: opened (created, truncated) when its first
// part starts and closed after its last, so open handles stay bounded by the parts in flight rather
// than the number of files. Parts write at their own offsets; the file never shrinks or reorders.
import { type FileHandle, mkdir, open } from "node:fs/promises";
import { dirname } from "node:path";

export class LocalFile {
  private handle: Promise<FileHandle> | null = null;
  constructor(
    readonly path: string,
    private partsLeft: number,
  ) {}

  get(): Promise<FileHandle> {
    this.handle ??= mkdir(dirname(this.path), { recursive: true }).then(() => open(this.path, "w"));
    return this.handle;
  }

  /** Returns true when this was the last part (the file is then closed). */
  async partDone(): Promise<boolean> {
    if (--this.partsLeft > 0) return false;
    await this.close();
    return true;
  }

  async close(): Promise<void> {
    const h = this.handle;
    this.handle = null;
    if (h) await (await h).close();
  }
}

/** [start, end) byte ranges covering `size` in `partSize` steps; one empty range for an empty file. */
export function partRanges(size: number, partSize: number): [number, number][] {
  if (size === 0) return [[0, 0]];
  const out: [number, number][] = [];
  for (let start = 0; start < size; start += partSize) out.push([start, Math.min(size, start + partSize)]);
  return out;
}
