// Starts the ranks of one Python executor and watches them: directly (one child per rank, torchrun-style
// RANK/WORLD_SIZE variables) or through `mpirun` (mpi_mode). Invariants: the first rank to exit, or a
// spawn failure, is reported exactly once through onExit; kill() ends every rank it started, by pid.
import { type ChildProcess, spawn } from "node:child_process";

export interface RankLaunch {
  pythonExecutable: string;
  /** Folder holding the lmi_executor package (prepended to PYTHONPATH). */
  pythonPath: string;
  args: string[];
  worldSize: number;
  mpiMode: boolean;
  mpirunExecutable: string;
  /** GPU indices to use (load_on_devices); rank r gets devices[r]. Empty: 0..worldSize-1. */
  devices: number[];
  env: Record<string, string | undefined>;
  /** Each line a rank writes to stdout or stderr. */
  onLog: (rank: number, line: string) => void;
  onExit: (err: Error) => void;
}

/** Environment that every rank must see: NVLink multicast stays off (the GPU hosts are shared). */
const SAFE_ENV = { NCCL_NVLS_ENABLE: "0", TORCH_SYMM_MEM_DISABLE_MULTICAST: "1", NVSHMEM_DISABLE_NVLS: "1" };

export class RankSupervisor {
  private readonly children: ChildProcess[] = [];
  private exited = false;
  private stopping = false;

  constructor(private readonly launch: RankLaunch) {}

  start(): void {
    const l = this.launch;
    const pyPath = [l.pythonPath, l.env.PYTHONPATH ?? process.env.PYTHONPATH].filter(Boolean).join(":");
    const base: NodeJS.ProcessEnv = {
      ...process.env,
      ...l.env,
      ...SAFE_ENV,
      PYTHONPATH: pyPath,
      PYTHONUNBUFFERED: "1",
    };
    if (l.devices.length > 0) base.CUDA_VISIBLE_DEVICES = l.devices.join(",");
    const pyArgs = ["-m", "lmi_executor", ...l.args];
    if (l.mpiMode) {
      const exported = ["PYTHONPATH", "PYTHONUNBUFFERED", ...Object.keys(SAFE_ENV)];
      if (l.devices.length > 0) exported.push("CUDA_VISIBLE_DEVICES");
      const mpiArgs = ["--allow-run-as-root", "--bind-to", "none", "-np", String(l.worldSize)];
      for (const k of exported) mpiArgs.push("-x", k);
      this.spawnOne(-1, l.mpirunExecutable, [...mpiArgs, l.pythonExecutable, ...pyArgs], base);
      return;
    }
    for (let r = 0; r < l.worldSize; r++) {
      const env = { ...base, RANK: String(r), LOCAL_RANK: String(r), WORLD_SIZE: String(l.worldSize) };
      this.spawnOne(r, l.pythonExecutable, pyArgs, env);
    }
  }

  get pids(): number[] {
    return this.children.map((c) => c.pid).filter((p): p is number => p !== undefined);
  }

  private spawnOne(rank: number, cmd: string, args: string[], env: NodeJS.ProcessEnv): void {
    const child = spawn(cmd, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    this.children.push(child);
    for (const stream of [child.stdout, child.stderr]) {
      let pending = "";
      stream?.setEncoding("utf8");
      stream?.on("data", (s: string) => {
        pending += s;
        const lines = pending.split("\n");
        pending = lines.pop() ?? "";
        for (const line of lines) this.launch.onLog(rank, line);
      });
      stream?.on("end", () => {
        if (pending) this.launch.onLog(rank, pending);
        pending = "";
      });
    }
    const what = rank < 0 ? "mpirun" : `rank ${rank}`;
    child.on("error", (err) =>
      this.report(new Error(`executor ${what} could not start (${cmd}): ${err.message}`)),
    );
    child.on("exit", (code, signal) => {
      this.report(new Error(`executor ${what} (pid ${child.pid}) exited with ${signal ?? `code ${code}`}`));
    });
  }

  private report(err: Error): void {
    if (this.exited) return;
    this.exited = true;
    // One rank gone means the collectives of the others will hang: end them all.
    this.kill();
    if (!this.stopping) this.launch.onExit(err);
  }

  /** Expected exit (shutdown): later exits are not reported as deaths. */
  markStopping(): void {
    this.stopping = true;
  }

  kill(signal: NodeJS.Signals = "SIGKILL"): void {
    // mpirun forwards SIGTERM to its ranks but cannot forward SIGKILL: ask first, insist a moment later.
    // (Ranks also stop on their own once their parent is gone: lmi_executor's parent watchdog.)
    const sig = this.launch.mpiMode && signal === "SIGKILL" ? "SIGTERM" : signal;
    for (const c of this.children) {
      if (c.exitCode === null && c.signalCode === null) {
        c.kill(sig);
        if (sig !== signal)
          setTimeout(() => c.exitCode === null && c.signalCode === null && c.kill(signal), 5000).unref();
      }
    }
  }

  /** Resolves when every started process has exited. */
  async waitForExit(): Promise<void> {
    await Promise.all(
      this.children.map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.exitCode !== null || c.signalCode !== null) resolve();
            else c.once("exit", () => resolve());
          }),
      ),
    );
  }
}
