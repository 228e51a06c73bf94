// Free-space check before a download writes anything: statfs on the nearest existing ancestor of the
// target, compared with the bytes still to fetch plus a reserve, so a model that cannot fit fails
// at once with a DiskFullError naming the model instead of filling the disk and dying half-way.
import { statfs } from "node:fs/promises";
import { dirname } from "node:path";
import { DiskFullError } from "./errors.ts";
import { formatBytes } from "./progress.ts";

/** Free bytes available to this (unprivileged) user on the filesystem holding `path`. */
export async function freeBytes(path: string): Promise<number> {
  let p = path;
  for (;;) {
    try {
      const st = await statfs(p);
      return st.bavail * st.bsize;
    } catch (err) {
      const parent = dirname(p);
      if ((err as NodeJS.ErrnoException).code !== "ENOENT" || parent === p) throw err;
      p = parent;
    }
  }
}

/**
 * Throws DiskFullError when `path`'s filesystem lacks `neededBytes + reserveBytes`.
 * `reserveBytes` (SERVING_DOWNLOAD_MIN_FREE_BYTES) keeps room for logs and other writers.
 */
export async function ensureFreeSpace(
  modelId: string,
  path: string,
  neededBytes: number,
  reserveBytes = 0,
): Promise<void> {
  const free = await freeBytes(path);
  if (free < neededBytes + reserveBytes) {
    const reserve = reserveBytes > 0 ? ` plus a reserve of ${formatBytes(reserveBytes)}` : "";
    throw new DiskFullError(
      modelId,
      `${formatBytes(neededBytes)} needed${reserve}, but only ${formatBytes(free)} free under ${path}`,
    );
  }
}
