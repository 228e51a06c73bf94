// Download progress: a tracker that counts bytes and emits throttled ProgressEvents, and a reporter
// that shows them as a cli-progress bar on a terminal or as a log line every few seconds otherwise
// (bytes, rate, ETA). The tracker never prints; the reporter never counts.
import cliProgress from "cli-progress";

export interface ProgressEvent {
  modelId: string;
  /** "start" once totals are known, "progress" while bytes flow, "done" at the end. */
  phase: "start" | "progress" | "done";
  bytesDone: number;
  bytesTotal: number;
  filesDone: number;
  filesTotal: number;
  elapsedMs: number;
  /** Bytes per second since the start. */
  rate: number;
}

export type ProgressCallback = (event: ProgressEvent) => void;

export class ProgressTracker {
  private bytesDone = 0;
  private filesDone = 0;
  private bytesTotal = 0;
  private filesTotal = 0;
  private readonly startedAt = Date.now();
  private lastEmit = 0;

  constructor(
    private readonly modelId: string,
    private readonly onProgress: ProgressCallback | undefined,
    private readonly minIntervalMs = 100,
  ) {}

  start(bytesTotal: number, filesTotal: number): void {
    this.bytesTotal = bytesTotal;
    this.filesTotal = filesTotal;
    this.emit("start");
  }

  /** Bytes written; negative when a failed part is rolled back before its retry. */
  addBytes(n: number): void {
    this.bytesDone += n;
    const now = Date.now();
    if (now - this.lastEmit >= this.minIntervalMs) this.emit("progress");
  }

  fileDone(): void {
    this.filesDone++;
    this.emit("progress");
  }

  done(): void {
    this.emit("done");
  }

  private emit(phase: ProgressEvent["phase"]): void {
    this.lastEmit = Date.now();
    const elapsedMs = this.lastEmit - this.startedAt;
    this.onProgress?.({
      modelId: this.modelId,
      phase,
      bytesDone: this.bytesDone,
      bytesTotal: this.bytesTotal,
      filesDone: this.filesDone,
      filesTotal: this.filesTotal,
      elapsedMs,
      rate: elapsedMs > 0 ? (this.bytesDone * 1000) / elapsedMs : 0,
    });
  }
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

export function formatBytes(n: number): string {
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${UNITS[u]}`;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/** One status line: "org/name: 12.0 MiB / 40.0 MiB (30.0%), 3/7 files, 5.0 MiB/s, ETA 6s". */
export function formatProgressLine(e: ProgressEvent): string {
  const pct = e.bytesTotal > 0 ? ((100 * e.bytesDone) / e.bytesTotal).toFixed(1) : "100.0";
  const eta = e.rate > 0 ? (e.bytesTotal - e.bytesDone) / e.rate : Number.POSITIVE_INFINITY;
  const head = `${e.modelId}: ${formatBytes(e.bytesDone)} / ${formatBytes(e.bytesTotal)} (${pct}%), ${e.filesDone}/${e.filesTotal} files, ${formatBytes(e.rate)}/s`;
  return e.phase === "done"
    ? `${head}, done in ${formatDuration(e.elapsedMs / 1000)}`
    : `${head}, ETA ${formatDuration(eta)}`;
}

export interface ReporterOptions {
  /** Where bars and lines go; default process.stderr. */
  stream?: NodeJS.WritableStream & { isTTY?: boolean };
  /** Log-line period when the stream is not a terminal. */
  intervalMs?: number;
  /** Overrides terminal detection (tests). */
  isTTY?: boolean;
  /** Log function for non-terminal lines; default writes the line to `stream`. */
  log?: (line: string) => void;
}

/** A ProgressCallback that draws a bar on a terminal or logs a line every `intervalMs` otherwise. */
export function createProgressReporter(opts: ReporterOptions = {}): ProgressCallback {
  const stream = opts.stream ?? process.stderr;
  const isTTY = opts.isTTY ?? stream.isTTY === true;
  if (isTTY) return barReporter(stream);
  const intervalMs = opts.intervalMs ?? 5000;
  const log = opts.log ?? ((line: string) => stream.write(`${line}\n`));
  let lastLine = 0;
  return (e) => {
    const now = Date.now();
    if (e.phase === "start") {
      lastLine = now;
      log(`Downloading ${e.modelId}: ${formatBytes(e.bytesTotal)} in ${e.filesTotal} files`);
    } else if (e.phase === "done" || now - lastLine >= intervalMs) {
      lastLine = now;
      log(formatProgressLine(e));
    }
  };
}

function barReporter(stream: NodeJS.WritableStream): ProgressCallback {
  const bar = new cliProgress.SingleBar(
    {
      stream,
      format: "{model} [{bar}] {percentage}% | {done} / {all} | {speed}/s | ETA {eta_formatted}",
      hideCursor: true,
      etaBuffer: 50,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return (e) => {
    const payload = {
      model: e.modelId,
      done: formatBytes(e.bytesDone),
      all: formatBytes(e.bytesTotal),
      speed: formatBytes(e.rate),
    };
    if (!started) {
      bar.start(Math.max(1, e.bytesTotal), e.bytesDone, payload);
      started = true;
    }
    bar.update(e.bytesDone, payload);
    if (e.phase === "done") bar.stop();
  };
}
