// Plain-JS entry of the CPU executor thread: registers tsx inside the thread (module hooks do not
// reach worker threads from the parent in Node 20), then loads the TypeScript worker.
import { register } from "tsx/esm/api";

register();
await import("./worker.ts");
