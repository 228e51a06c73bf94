// A model dir's requirements.txt is installed into the worker's Python before the workers start
// (spec §1.10, §5.3 step 1): `python -m pip install -q -r requirements.txt`, with `-f <dir>/requirements`
// when the model ships wheels there. A failed install fails the model load with pip's own output.

import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { ModelLoadError } from "./errors.ts";

export async function installRequirements(opts: {
  pythonExecutable: string;
  modelDir: string;
  timeoutMs: number;
  log: (level: "info" | "warn" | "error", line: string) => void;
  env?: NodeJS.ProcessEnv;
}): Promise<boolean> {
  const file = join(opts.modelDir, "requirements.txt");
  if (!existsSync(file)) return false;
  const args = ["-m", "pip", "install", "-q", "-r", file];
  const wheels = join(opts.modelDir, "requirements");
  if (existsSync(wheels)) args.push("-f", wheels);
  if ((opts.env ?? process.env).HF_HUB_OFFLINE === "1") args.push("--no-index");
  opts.log("info", `installing ${file}: ${opts.pythonExecutable} ${args.join(" ")}`);
  const output: string[] = [];
  const code = await new Promise<number | string>((resolve) => {
    const proc = spawn(opts.pythonExecutable, args, { cwd: opts.modelDir, env: opts.env ?? process.env });
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      resolve(`timed out after ${opts.timeoutMs / 1000} s`);
    }, opts.timeoutMs);
    const collect = (chunk: Buffer) => {
      for (const line of chunk.toString("utf8").split("\n")) {
        if (line.trim()) {
          output.push(line);
          opts.log("info", `pip: ${line}`);
        }
      }
    };
    proc.stdout.on("data", collect);
    proc.stderr.on("data", collect);
    proc.once("error", (e) => {
      clearTimeout(timer);
      resolve(e.message);
    });
    proc.once("close", (c) => {
      clearTimeout(timer);
      resolve(c ?? "killed");
    });
  });
  if (code !== 0) {
    throw new ModelLoadError(
      `installing ${file} failed (${typeof code === "number" ? `pip exit code ${code}` : code}):\n${output.slice(-20).join("\n")}`,
    );
  }
  return true;
}
