// The server's logger: one line per event, plain text (DJL-like) or one JSON object per line
// (`log_format=json`). The level can change at runtime (POST /server/logging?level=...).
// Invariant: request ids appear as `RequestId=[id]` in text lines and as `requestId` in JSON lines.

export type LogLevel = "trace" | "debug" | "info" | "warn" | "error" | "off";
const ORDER: Record<LogLevel, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, off: 100 };

export function isLogLevel(v: string): v is LogLevel {
  return Object.hasOwn(ORDER, v);
}

export interface LogSink {
  write(line: string): void;
}

export class Logger {
  level: LogLevel;
  readonly json: boolean;
  private readonly sink: LogSink;

  constructor(opts: { level?: LogLevel; json?: boolean; sink?: LogSink } = {}) {
    this.level = opts.level ?? "info";
    this.json = opts.json ?? false;
    this.sink = opts.sink ?? { write: (l) => process.stderr.write(l) };
  }

  enabled(level: LogLevel): boolean {
    return ORDER[level] >= ORDER[this.level] && this.level !== "off";
  }

  /** Lines every operator needs whatever the level (the listen addresses); silenced only by "off". */
  notice(msg: string, fields: Record<string, unknown> = {}): void {
    if (this.level !== "off") this.write("info", msg, fields);
  }

  log(level: LogLevel, msg: string, fields: Record<string, unknown> = {}): void {
    if (!this.enabled(level)) return;
    this.write(level, msg, fields);
  }

  private write(level: LogLevel, msg: string, fields: Record<string, unknown>): void {
    const time = new Date().toISOString();
    if (this.json) {
      this.sink.write(`${JSON.stringify({ time, level, msg, ...fields })}\n`);
      return;
    }
    const { requestId, ...rest } = fields;
    const rid = requestId === undefined ? "" : ` RequestId=[${String(requestId)}]`;
    const extra = Object.keys(rest).length > 0 ? ` ${JSON.stringify(rest)}` : "";
    this.sink.write(`${time} ${level.toUpperCase()}${rid} ${msg}${extra}\n`);
  }

  debug(msg: string, fields?: Record<string, unknown>): void {
    this.log("debug", msg, fields);
  }
  info(msg: string, fields?: Record<string, unknown>): void {
    this.log("info", msg, fields);
  }
  warn(msg: string, fields?: Record<string, unknown>): void {
    this.log("warn", msg, fields);
  }
  error(msg: string, fields?: Record<string, unknown>): void {
    this.log("error", msg, fields);
  }
}
