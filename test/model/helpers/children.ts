// Test helper: runs resolve-child.ts in fresh node processes (several at once for concurrency tests,
// or one to kill mid-download).
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

const CHILD = fileURLToPath(new URL("./resolve-child.ts", import.meta.url));

export interface ChildResult {
  ok: boolean;
  localDir?: string;
  downloaded?: boolean;
  type?: string;
  status?: number;
  message?: string;
}

/** Starts one resolve-child process; `result` settles when it exits (rejects if it printed no result). */
export function spawnResolveChild(
  args: string[],
  env: Record<string, string>,
  timeoutMs = 60_000,
): { child: ChildProcess; result: Promise<ChildResult> } {
  const child = spawn(process.execPath, ["--import", "tsx", CHILD, ...args], {
    env: { PATH: process.env.PATH ?? "", AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const result = new Promise<ChildResult>((resolve, reject) => {
    let out = "";
    let err = "";
    child.stdout!.on("data", (d) => (out += d));
    child.stderr!.on("data", (d) => (err += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const line = out.trim().split("\n").pop() ?? "";
      try {
        resolve(JSON.parse(line) as ChildResult);
      } catch {
        reject(new Error(`child printed no result (exit ${code ?? signal}); stdout=${out} stderr=${err}`));
      }
    });
  });
  return { child, result };
}

export function resolveInChild(
  args: string[],
  env: Record<string, string>,
  timeoutMs = 60_000,
): Promise<ChildResult> {
  return spawnResolveChild(args, env, timeoutMs).result;
}
