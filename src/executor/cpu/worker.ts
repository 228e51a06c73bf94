// Thread side of the CPU executor: runs CpuModelRunner on a worker_thread and answers the main
// thread's calls one message at a time ({id, method, args} -> {id, ok, value | message}). Calls are
// handled strictly in order; a thrown error answers that call only, the thread keeps serving.
import { parentPort, workerData } from "node:worker_threads";
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

const port = parentPort;
if (!port) throw new Error("worker.ts must run inside a worker_thread");
const opts = workerData as CpuExecutorOptions;
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
