// Thread side of the CPU executor: runs CpuModelRunner on a worker_thread and answers the main
// thread's calls one message at a time ({id, method, args} -> {id, ok, value | message}). Calls are
// handled strictly in order; a thrown error answers that call only, the thread keeps serving.
import type { MessagePort } from "node:worker_threads";
import { type CpuExecutorOptions, CpuModelRunner } from "./model-runner.ts";
import { CpuPaddedRunner } from "./padded-runner.ts";

export interface CallMessage {
  id: number;
  method: "load" | "profile" | "initCache" | "execute" | "health";
  args: unknown[];
}

export type ReplyMessage =
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; message: string };

/** workerData of the CPU executor thread (the bundle's entry tells its threads apart by `kind`). */
export interface CpuThreadData {
  kind: "lmi-cpu-executor-thread";
  options: CpuExecutorOptions;
}

/** The thread's work: builds the runner and answers calls on `port` until the thread is terminated. */
export function runCpuExecutorThread(port: MessagePort, data: CpuThreadData): void {
  const opts = data.options;
  const runner = opts.kvLayout === "padded" ? new CpuPaddedRunner(opts) : new CpuModelRunner(opts);
  port.on("message", (msg: CallMessage) => {
    let reply: ReplyMessage;
    try {
      let value: unknown;
      switch (msg.method) {
        case "load":
          value = runner.load();
          break;
        case "profile":
          value = runner.profile();
          break;
        case "initCache":
          value = runner.initCache(msg.args[0] as number);
          break;
        case "execute":
          value = runner.execute(msg.args[0] as Parameters<CpuModelRunner["execute"]>[0]);
          break;
        case "health":
          value = { ok: true };
          break;
      }
      reply = { id: msg.id, ok: true, value };
    } catch (err) {
      reply = { id: msg.id, ok: false, message: (err as Error).message };
    }
    port.postMessage(reply);
  });
}
