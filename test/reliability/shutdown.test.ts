// SIGTERM on the real `lmi serve` (tiny model): it stops accepting at once, lets in-flight streams
// finish, then stops the engines and exits 0; past the drain timeout (LMI_SHUTDOWN_DRAIN_S) a stream
// still running ends with its error line, never a silent cut. Nothing is left running afterwards.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { describe, it } from "node:test";
import { startServe } from "../e2e/serve-process.ts";
import { MODEL_DIR, post, recordFigures, waitFor } from "./helpers.ts";

function exited(
  proc: import("node:child_process").ChildProcess,
): Promise<{ code: number | null; at: number }> {
  return new Promise((done) => {
    if (proc.exitCode !== null) return done({ code: proc.exitCode, at: performance.now() });
    proc.once("exit", (code) => done({ code, at: performance.now() }));
  });
}

/** Process ids whose parent is `pid` (the server's own child processes, if any). */
function childrenOf(pid: number): number[] {
  try {
    return execFileSync("ps", ["-o", "pid=", "--ppid", String(pid)], { encoding: "utf8" })
      .split("\n")
      .map((l) => Number(l.trim()))
      .filter((n) => n > 0);
  } catch {
    return []; // ps exits 1 when there are none
  }
}

function lastJson(body: string): Record<string, unknown> {
  return JSON.parse(body.trim().split("\n").at(-1) ?? "{}");
}

describe("shutdown on SIGTERM", () => {
  it("stops accepting, drains in-flight streams to their end, exits 0, leaves nothing running", async () => {
    const srv = await startServe([MODEL_DIR], { LMI_LOG_LEVEL: "info" });
    const pid = srv.proc.pid!;
    const streams = [0, 1, 2].map((i) =>
      post(srv.url, "/invocations", {
        inputs: `Drain ${i}`,
        parameters: { max_new_tokens: 60, ignore_eos: true, details: true },
        stream: true,
      }),
    );
    await Promise.all(streams.map((x) => x.firstChunk));
    const children = childrenOf(pid);
    let ended = 0;
    for (const x of streams) void x.done.then(() => ended++);
    const exit = exited(srv.proc);
    const tTerm = performance.now();
    srv.proc.kill("SIGTERM");
    // The listener closes at once: new connections are refused while the streams are still running
    // (polled, so a loaded machine's signal delivery delay does not matter).
    await waitFor(
      "new connections to be refused",
      async () => {
        const late = await post(srv.url, "/ping", "").done;
        return late.status === 0 ? true : undefined;
      },
      3_000,
    );
    const refusedAfterMs = performance.now() - tTerm;
    assert.equal(ended, 0, "the streams were still running when the listener closed");
    for (const x of streams) {
      const r = await x.done;
      assert.equal(r.status, 200);
      assert.ok(r.complete, "a drained stream ends with its terminator");
      const last = lastJson(r.body) as { details?: { finish_reason: string; generated_tokens: number } };
      assert.equal(last.details?.finish_reason, "length", r.body.slice(-300));
      assert.equal(last.details?.generated_tokens, 60);
    }
    const { code, at } = await exit;
    assert.equal(code, 0, srv.logs.join(""));
    // Children (tsx's esbuild service among them) go with the server; allow them a moment to exit.
    const alive = (c: number) => {
      try {
        process.kill(c, 0);
        return true;
      } catch {
        return false;
      }
    };
    await waitFor(
      "the server's child processes to exit",
      () => (children.some(alive) ? undefined : true),
      5_000,
    );
    assert.match(srv.logs.join(""), /SIGTERM: shutting down/);
    recordFigures("shutdown-drain", {
      promise: "SIGTERM stops accepting, drains in-flight streams, exits 0",
      inFlightAtSigterm: streams.length,
      drainedToTheEnd: streams.length,
      sigtermToExitMs: Math.round(at - tTerm),
      newConnectionsRefusedAfterMs: Math.round(refusedAfterMs),
    });
  });

  it("past the drain timeout a running stream ends with an error line and the process exits", async () => {
    const srv = await startServe([MODEL_DIR], { LMI_LOG_LEVEL: "warn", LMI_SHUTDOWN_DRAIN_S: "1" });
    const x = post(srv.url, "/invocations", {
      inputs: "Never ending",
      parameters: { max_new_tokens: 900, ignore_eos: true, details: true },
      stream: true,
    });
    await x.firstChunk;
    const exit = exited(srv.proc);
    const tTerm = performance.now();
    srv.proc.kill("SIGTERM");
    const r = await x.done;
    const endMs = performance.now() - tTerm;
    assert.ok(r.complete, "the stream was cut without its terminator");
    const last = lastJson(r.body) as { details?: { finish_reason: string }; token?: { error_msg?: string } };
    assert.equal(last.details?.finish_reason, "error", r.body.slice(-300));
    assert.match(String(last.token?.error_msg), /shut/);
    assert.ok(endMs >= 900 && endMs < 6_000, `the stream ended ${Math.round(endMs)} ms after SIGTERM`);
    const { code, at } = await exit;
    assert.equal(code, 0);
    recordFigures("shutdown-timeout", {
      promise: "past the drain timeout, running streams end with an error line; the process exits",
      drainTimeoutMs: 1000,
      streamEndAfterSigtermMs: Math.round(endMs),
      sigtermToExitMs: Math.round(at - tTerm),
    });
  });
});
