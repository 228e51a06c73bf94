// Test helper: runs resolve-child.ts in fresh node processes (several at once for concurrency tests).
import { spawn } from "node:child_process";
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

export function resolveInChild(
  args: string[],
  env: Record<string, string>,
  timeoutMs = 60_000,
): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", CHILD, ...args], {
      env: { PATH: process.env.PATH ?? "", AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("close", () => {
      clearTimeout(timer);
      const line = out.trim().split("\n").pop() ?? "";
      try {
        resolve(JSON.parse(line) as ChildResult);
      } catch {
        reject(new Error(`child printed no result; stdout=${out} stderr=${err}`));
      }
    });
  });
}
