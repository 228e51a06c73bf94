// Spawns the real `lmi serve` (bin/lmi.mjs) on a free loopback port and waits until it listens, so
// end-to-end tests talk to exactly what users run. The model defaults to the embedded tiny-kjv once it
// has weights, else the zoo's tiny llama. stop() sends SIGTERM and waits for the exit.

import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";

export const ROOT = resolve(import.meta.dirname, "..", "..");

/** The model the end-to-end tests serve: tiny-kjv when it is complete, else the zoo's tiny llama. */
export function testModelDir(): string {
  const kjv = join(ROOT, "models", "tiny-kjv");
  if (existsSync(join(kjv, "config.json")) && existsSync(join(kjv, "model.safetensors"))) return kjv;
  return join(ROOT, "models", "zoo", "llama");
}

export interface ServeProcess {
  url: string;
  proc: ChildProcess;
  logs: string[];
  stop(): Promise<void>;
}

export async function startServe(
  args: string[],
  env: Record<string, string> = {},
  opts: { timeoutMs?: number; cwd?: string; port?: boolean; script?: string } = {},
): Promise<ServeProcess> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const portArgs = opts.port === false ? [] : ["--port", "0"];
  const script = opts.script ?? join(ROOT, "bin", "lmi.mjs"); // another build of the CLI (the single-file bundle)
  const proc = spawn(process.execPath, [script, "serve", ...portArgs, ...args], {
    cwd: opts.cwd ?? ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const logs: string[] = [];
  const url = await new Promise<string>((resolveUrl, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`lmi serve did not start:\n${logs.join("")}`)),
      timeoutMs,
    );
    const onData = (d: Buffer) => {
      logs.push(d.toString());
      const m = /bind to: (http:\/\/[^\s]+)/.exec(logs.join(""));
      if (m) {
        clearTimeout(timer);
        resolveUrl(m[1]);
      }
    };
    proc.stdout?.on("data", onData);
    proc.stderr?.on("data", (d: Buffer) => logs.push(d.toString()));
    proc.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`lmi serve exited with ${code}:\n${logs.join("")}`));
    });
  });
  return {
    url,
    proc,
    logs,
    stop: () =>
      new Promise<void>((done) => {
        if (proc.exitCode !== null) return done();
        proc.once("exit", () => done());
        proc.kill("SIGTERM");
      }),
  };
}
