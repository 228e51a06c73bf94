// One Python worker process (all of its MPI ranks): spawn, relay its log lines, wait for the startup
// line, connect one socket per rank, send the init request, then serve one request at a time.
// Invariants: at most one request in flight (sync protocol, spec §5.2); every rank gets the same frame
// and rank 0's reply is the answer; once the process exits, every pending and later read fails.

import { type ChildProcess, spawn } from "node:child_process";
import { rmSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { createInterface } from "node:readline";
import { ServerError } from "../errors.ts";
import { initFailure, ModelLoadError, WorkerError } from "./errors.ts";
import { ChunkQueue, encodeInput, FrameReader, readOutput } from "./framing.ts";
import type { LaunchCommand } from "./launch.ts";
import type { DjlInput, DjlOutput } from "./protocol.ts";

export const STARTED_LINE = "Python engine started.";
const STOPPED_MESSAGE = "Backend Python process is stopped.";
const TAIL_LINES = 30;
/** After a worker exits, how long its last output may take to come out of the pipes (a process it started may
 * hold them open, so this is not waited for without bound). */
const OUTPUT_DRAIN_MS = 500;

export type WorkerLog = (level: "info" | "warn" | "error", line: string) => void;

export interface PythonWorkerOptions {
  id: number;
  modelName: string;
  launch: LaunchCommand;
  /** How long to wait for every rank's startup line (DJL: 2 minutes). */
  startupTimeoutMs: number;
  log: WorkerLog;
}

export interface Reply {
  output: DjlOutput;
  /** Settles when the whole reply (every stream chunk, every rank) has been read. */
  done: Promise<void>;
}

interface Rank {
  socket: Socket;
  reader: FrameReader;
}

export class PythonWorker {
  readonly id: number;
  readonly startTime = new Date();
  private proc: ChildProcess | null = null;
  private ranks: Rank[] = [];
  private tail: string[] = [];
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  private busy = false;
  /** Set by kill(): the process is going away even though its exit event has not arrived yet. */
  private killed = false;
  /** Settles when the process has exited (never rejects). */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private resolveExited!: (v: { code: number | null; signal: NodeJS.Signals | null }) => void;

  constructor(private readonly opts: PythonWorkerOptions) {
    this.id = opts.id;
    this.exited = new Promise((r) => {
      this.resolveExited = r;
    });
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  get isAlive(): boolean {
    return this.proc !== null && this.exitInfo === null && !this.killed;
  }

  /** The last lines the worker printed, for error messages. */
  recentOutput(): string {
    return this.tail.join("\n");
  }

  /** Spawns, waits for the startup line of every rank, connects, sends init; rejects on any failure. */
  async start(init: DjlInput, loadTimeoutMs: number): Promise<void> {
    const { launch, modelName } = this.opts;
    // Own process group: kill() must take down mpirun's ranks and anything a handler spawned.
    const proc = spawn(launch.command, launch.args, {
      cwd: launch.cwd,
      env: launch.env,
      stdio: "pipe",
      detached: true,
    });
    this.proc = proc;
    const { started, drained } = this.watchOutput(proc, launch.socketPaths.length);
    proc.once("exit", (code, signal) => {
      this.onExit(code, signal);
      // Its last lines (often the error) may still be in the pipes: they belong in the error messages that
      // `exited` leads to.
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<void>((r) => {
        timer = setTimeout(r, OUTPUT_DRAIN_MS);
      });
      void Promise.race([drained, late]).then(() => {
        clearTimeout(timer);
        this.resolveExited({ code, signal });
      });
    });
    // A spawn that fails (no such executable) may never emit "exit"; nothing runs, so it has exited.
    proc.once("error", () => {
      if (proc.pid === undefined) {
        this.onExit(null, null);
        this.resolveExited({ code: null, signal: null });
      }
    });
    const spawnFailed = new Promise<never>((_, reject) =>
      proc.once("error", (e) =>
        reject(
          new ModelLoadError(`cannot start the Python worker '${launch.command}': ${e.message}`, {
            cause: e,
          }),
        ),
      ),
    );
    let printedStartup = false;
    void started.then(() => {
      printedStartup = true;
    });
    const exitedEarly = this.exited.then(() => {
      throw printedStartup
        ? this.diedWhileLoading()
        : new ModelLoadError(
            `Python stream closed unexpectedly: the worker of ${modelName} exited (${this.describeExit()}) ` +
              `before it started.\n${this.recentOutput()}`,
          );
    });
    // Both are only raced during start; later they must not surface as unhandled rejections.
    spawnFailed.catch(() => {});
    exitedEarly.catch(() => {});
    try {
      await withTimeout(
        Promise.race([started, spawnFailed, exitedEarly]),
        this.opts.startupTimeoutMs,
        () =>
          `the Python worker of ${modelName} did not print "${STARTED_LINE}" within ${this.opts.startupTimeoutMs / 1000} s`,
      );
      this.ranks = await Promise.all(launch.socketPaths.map((p) => this.connectRank(p)));
      const reply = await withTimeout(
        Promise.race([this.send(init), exitedEarly]),
        loadTimeoutMs,
        () => `model loading timed out: ${modelName} did not load within ${loadTimeoutMs / 1000} s`,
      );
      await reply.done;
      if (reply.output.code >= 300) throw initFailure(modelName, reply.output);
    } catch (e) {
      this.kill();
      if (e instanceof WorkerError) {
        // The socket closed under the init request: the process died while loading. Its exit status
        // and last output say why, so wait (briefly) for the exit event to have them.
        await withTimeout(this.exited, 2000, () => "").catch(() => {});
        throw this.diedWhileLoading();
      }
      if (e instanceof ServerError) throw e;
      throw new ModelLoadError(e instanceof Error ? e.message : String(e), { cause: e });
    }
  }

  /**
   * Sends one request and resolves with rank 0's reply header. A stream is watched: when no chunk
   * arrives within timeoutMs the process is killed, so a hung generator cannot hold the worker.
   */
  async predict(input: DjlInput, timeoutMs: number): Promise<Reply> {
    if (!this.isAlive) throw new WorkerError(STOPPED_MESSAGE);
    if (this.busy) throw new Error("PythonWorker.predict: a request is already in flight (pool bug)");
    this.busy = true;
    try {
      const reply = await withTimeout(
        this.send(input),
        timeoutMs,
        () => `prediction timed out after ${timeoutMs / 1000} s (option.predict_timeout)`,
      );
      const done = reply.done.finally(() => {
        this.busy = false;
      });
      if (!reply.output.stream) return { output: reply.output, done };
      return { output: { ...reply.output, stream: this.watchStream(reply.output.stream, timeoutMs) }, done };
    } catch (e) {
      this.busy = false;
      const crashed = !this.killed && e instanceof WorkerError;
      // After a crash, let the process finish exiting first (its status says how it ended); then
      // kill whatever is left, as after a timeout, so no half-dead worker lingers.
      if (crashed) {
        this.killed = true;
        await withTimeout(this.exited, 1000, () => "").catch(() => {});
      }
      this.kill();
      if (e instanceof TimeoutError) throw new WorkerError(e.message);
      if (crashed) {
        throw new WorkerError(
          `${STOPPED_MESSAGE} The worker ${this.exitInfo ? `exited (${this.describeExit()})` : "closed its connection"}.`,
        );
      }
      throw e instanceof ServerError ? e : new WorkerError(`${STOPPED_MESSAGE} ${String(e)}`, { cause: e });
    }
  }

  /** SIGKILL: a worker that timed out or lost its protocol state is not trusted to stop by itself. */
  kill(): void {
    this.killed = true;
    for (const r of this.ranks) r.socket.destroy();
    if (!this.proc?.pid) return;
    try {
      process.kill(-this.proc.pid, "SIGKILL");
    } catch {
      // the group is already gone
    }
  }

  /** Closes the sockets (the worker exits on EOF), then kills it if it is still there after graceMs. */
  async stop(graceMs = 3000): Promise<void> {
    if (!this.proc) return;
    if (this.ranks.length === 0) graceMs = 0; // not connected yet: it would not see the EOF
    for (const r of this.ranks) r.socket.end();
    const timer = setTimeout(() => this.kill(), graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  private diedWhileLoading(): ModelLoadError {
    return new ModelLoadError(
      `the worker of ${this.opts.modelName} died while loading the model (${this.describeExit()}):\n${this.recentOutput()}`,
    );
  }

  describeExit(): string {
    if (!this.exitInfo) return "running";
    return this.exitInfo.signal ? `signal ${this.exitInfo.signal}` : `exit code ${this.exitInfo.code}`;
  }

  private async send(input: DjlInput): Promise<Reply> {
    const frame = encodeInput(input);
    for (const r of this.ranks) r.socket.write(frame);
    const replies = await Promise.all(this.ranks.map((r) => readOutput(r.reader)));
    // Other ranks answer too (same handler, same input); their replies are read and dropped so that
    // every connection is positioned at the next frame before the worker takes another request.
    for (const other of replies.slice(1)) void drain(other.output.stream);
    return { output: replies[0].output, done: Promise.all(replies.map((r) => r.done)).then(() => undefined) };
  }

  private watchStream(stream: AsyncIterable<Uint8Array>, timeoutMs: number): AsyncIterable<Uint8Array> {
    const out = new ChunkQueue();
    void (async () => {
      const it = stream[Symbol.asyncIterator]();
      for (;;) {
        let next: IteratorResult<Uint8Array>;
        try {
          next = await withTimeout(
            it.next(),
            timeoutMs,
            () => `no stream chunk within ${timeoutMs / 1000} s`,
          );
        } catch (e) {
          if (e instanceof TimeoutError) this.kill();
          out.fail(new WorkerError(e instanceof Error ? e.message : String(e), { cause: e }));
          return;
        }
        if (next.done) return out.end();
        out.push(next.value);
      }
    })();
    return out;
  }

  private connectRank(path: string): Promise<Rank> {
    return new Promise((resolve, reject) => {
      const socket = connect(path);
      const reader = new FrameReader();
      socket.once("connect", () => resolve({ socket, reader }));
      socket.once("error", (e) => {
        reader.close(new WorkerError(`${STOPPED_MESSAGE} (${e.message})`, { cause: e }));
        reject(e);
      });
      socket.on("data", (chunk: Buffer) => reader.push(chunk));
      socket.once("close", () => reader.close(new WorkerError(STOPPED_MESSAGE)));
    });
  }

  /** Relays stdout/stderr line by line. `started` resolves once `numRanks` startup lines were seen, `drained` once
   * both streams have ended (every line relayed). */
  private watchOutput(
    proc: ChildProcess,
    numRanks: number,
  ): { started: Promise<void>; drained: Promise<void> } {
    let seen = 0;
    let resolveStarted!: () => void;
    const started = new Promise<void>((r) => {
      resolveStarted = r;
    });
    const prefix = `W-${proc.pid}-${this.opts.modelName}`;
    const relay = (stream: NodeJS.ReadableStream | null, name: "stdout" | "stderr"): Promise<void> => {
      if (!stream) return Promise.resolve();
      const lines = createInterface({ input: stream });
      const closed = new Promise<void>((r) => lines.once("close", () => r()));
      lines.on("line", (line) => {
        this.tail.push(line);
        if (this.tail.length > TAIL_LINES) this.tail.shift();
        // Under mpirun --tag-output each line starts with `[1,<rank>]<stdout>:`.
        const text = line.replace(/^\[\d+,\d+\]<std(?:out|err)>:/, "");
        if (text.trim() === STARTED_LINE && ++seen === numRanks) resolveStarted();
        this.opts.log(levelOf(text, name), `${prefix}-${name}: ${line}`);
      });
      return closed;
    };
    const drained = Promise.all([relay(proc.stdout, "stdout"), relay(proc.stderr, "stderr")]).then(() => {});
    return { started, drained };
  }

  private onExit(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.exitInfo) return;
    this.exitInfo = { code, signal };
    for (const r of this.ranks) r.socket.destroy();
    // A killed worker cannot remove its socket and pid files; stale ones would pile up in /tmp.
    for (const p of this.opts.launch.socketPaths) {
      for (const f of [p, `${p}.pid`]) rmSync(f, { force: true });
    }
  }
}

/** djl_python logs `LEVEL name message` on stdout; keep its level. Other stderr output is a warning. */
function levelOf(text: string, stream: "stdout" | "stderr"): "info" | "warn" | "error" {
  if (/^(ERROR|CRITICAL)\b/.test(text) || /^Traceback \(most recent call last\)/.test(text)) return "error";
  if (/^WARNING\b/.test(text)) return "warn";
  return stream === "stderr" ? "warn" : "info";
}

async function drain(stream: AsyncIterable<Uint8Array> | undefined): Promise<void> {
  if (!stream) return;
  try {
    for await (const _ of stream) {
      // discard
    }
  } catch {
    // the rank's own done promise reports the failure
  }
}

export class TimeoutError extends Error {}

/** Races p against a timer; the timer never keeps the process alive after p settles. */
export function withTimeout<T>(p: Promise<T>, ms: number, message: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(message())), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
