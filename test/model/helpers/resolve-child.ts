// Test helper run as a separate process: resolves argv[2] (revision argv[3]) with the process env
// and prints one JSON line, {"ok":true,...result} or {"ok":false,"type","status","message"}.
import { resolveModel } from "../../../src/model/resolve-model.ts";

const [modelId, revision] = process.argv.slice(2);
try {
  const r = await resolveModel({ modelId, revision: revision || undefined, onProgress: null, log: () => {} });
  process.stdout.write(`${JSON.stringify({ ok: true, ...r })}\n`);
} catch (err) {
  const e = err as { type?: string; status?: number; message?: string };
  process.stdout.write(
    `${JSON.stringify({ ok: false, type: e.type, status: e.status, message: e.message })}\n`,
  );
}
