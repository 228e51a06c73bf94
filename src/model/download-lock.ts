// Fills a directory exactly once across processes: work happens in a private temp dir that is renamed
// onto the final path only when complete, so a final dir always holds a complete download and an
// interrupted one is never used. A lock file (O_EXCL, heartbeat by mtime) makes a second process
// wait for the first instead of downloading twice; correctness never depends on the lock, only the
// rename does, so breaking a stale lock can at worst cost a duplicate download, never corrupt one.
import { randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, rename, rm, stat, unlink, utimes, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { basename, dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

export interface FillOnceOptions {
  finalDir: string;
  /** Writes the complete content into `tmpDir` (which exists and is empty). */
  fill: (tmpDir: string) => Promise<void>;
  signal?: AbortSignal;
  /** A lock whose mtime is older than this is stale (its holder stopped heartbeating). */
  staleMs?: number;
  pollMs?: number;
  /** Called once when another process holds the lock and we start waiting for it. */
  onWait?: (holder: string) => void;
}

interface LockInfo {
  pid: number;
  host: string;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

async function readLock(lockPath: string): Promise<{ info: LockInfo | null; mtimeMs: number } | null> {
  try {
    const [text, st] = await Promise.all([readFile(lockPath, "utf8"), stat(lockPath)]);
    let info: LockInfo | null = null;
    try {
      info = JSON.parse(text) as LockInfo;
    } catch {
      // Being written right now; judge by mtime alone.
    }
    return { info, mtimeMs: st.mtimeMs };
  } catch {
    return null; // released between our attempts
  }
}

function isStale(lock: { info: LockInfo | null; mtimeMs: number }, staleMs: number): boolean {
  if (lock.info && lock.info.host === hostname() && !isAlive(lock.info.pid)) return true;
  return Date.now() - lock.mtimeMs > staleMs;
}

/** Removes temp dirs left for `finalDir` by processes that died (same host, pid gone). */
async function removeDeadTemps(finalDir: string): Promise<void> {
  const parent = dirname(finalDir);
  const prefix = `.tmp-${basename(finalDir)}-`;
  let names: string[];
  try {
    names = await readdir(parent);
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const [host, pidText] = name.slice(prefix.length).split("~");
    const pid = Number(pidText);
    if (host === hostname() && Number.isInteger(pid) && pid !== process.pid && isAlive(pid)) continue;
    await rm(join(parent, name), { recursive: true, force: true });
  }
}

/** Returns `finalDir` once it holds a complete copy; `downloaded` says whether this call filled it. */
export async function fillOnce(opts: FillOnceOptions): Promise<{ dir: string; downloaded: boolean }> {
  const { finalDir, signal } = opts;
  const staleMs = opts.staleMs ?? 30_000;
  const pollMs = opts.pollMs ?? 200;
  const lockPath = `${finalDir}.lock`;
  const parent = dirname(finalDir);
  let waited = false;
  for (;;) {
    signal?.throwIfAborted();
    if (await exists(finalDir)) return { dir: finalDir, downloaded: false };
    const me: LockInfo = { pid: process.pid, host: hostname() };
    try {
      await writeFile(lockPath, JSON.stringify(me), { flag: "wx" });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") {
        await mkdir(parent, { recursive: true });
        continue;
      }
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const lock = await readLock(lockPath);
      if (lock && isStale(lock, staleMs)) {
        // Move it aside rather than unlink: only one breaker wins the rename of that inode.
        const aside = `${lockPath}.stale-${randomBytes(4).toString("hex")}`;
        await rename(lockPath, aside).then(
          () => unlink(aside),
          () => undefined,
        );
        continue;
      }
      if (!waited && lock?.info) {
        waited = true;
        opts.onWait?.(`pid ${lock.info.pid} on ${lock.info.host}`);
      }
      await sleep(pollMs, undefined, { signal });
      continue;
    }
    try {
      return await fillLocked(opts, staleMs);
    } finally {
      await unlink(lockPath).catch(() => undefined);
    }
  }
}

async function fillLocked(
  opts: FillOnceOptions,
  staleMs: number,
): Promise<{ dir: string; downloaded: boolean }> {
  const { finalDir } = opts;
  const lockPath = `${finalDir}.lock`;
  if (await exists(finalDir)) return { dir: finalDir, downloaded: false };
  await removeDeadTemps(finalDir);
  const tmpDir = join(
    dirname(finalDir),
    `.tmp-${basename(finalDir)}-${hostname()}~${process.pid}~${randomBytes(4).toString("hex")}`,
  );
  await mkdir(tmpDir, { recursive: true });
  const heartbeat = setInterval(
    () => {
      const now = new Date();
      utimes(lockPath, now, now).catch(() => undefined);
    },
    Math.max(50, Math.floor(staleMs / 3)),
  );
  heartbeat.unref();
  try {
    await opts.fill(tmpDir);
    opts.signal?.throwIfAborted();
    try {
      await rename(tmpDir, finalDir);
    } catch (err) {
      // Someone finished first (only possible after a stale-lock break): theirs is complete too.
      const code = (err as NodeJS.ErrnoException).code;
      if ((code === "ENOTEMPTY" || code === "EEXIST") && (await exists(finalDir))) {
        await rm(tmpDir, { recursive: true, force: true });
        return { dir: finalDir, downloaded: false };
      }
      throw err;
    }
    return { dir: finalDir, downloaded: true };
  } catch (err) {
    await rm(tmpDir, { recursive: true, force: true }).catch(() => undefined);
    throw err;
  } finally {
    clearInterval(heartbeat);
  }
}
