// Test helpers for the Python executor: which interpreter has PyTorch (Debian's /usr/bin/python3 in CI),
// and tiny random Llama-family checkpoints written by python/tests/test_executor_fixtures.py.
import { spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const PYTHON = process.env.LMI_TEST_PYTHON ?? "/usr/bin/python3";
export const PYTHON_DIR = fileURLToPath(new URL("../../../../python", import.meta.url));

function probeTorch(): string | null {
  const r = spawnSync(PYTHON, ["-c", "import torch"], { encoding: "utf8" });
  if (r.error) return `${PYTHON} not runnable: ${r.error.message}`;
  if (r.status !== 0) return `${PYTHON} has no torch (install Debian's python3-torch: .ci/apt-packages.sh)`;
  return null;
}

/** null when the Python tests can run; otherwise why not (used as the skip reason). */
export const torchMissing: string | null = probeTorch();

/** Runs Python code with python/ and python/tests on sys.path; returns stdout parsed as JSON. */
export function runPython(code: string): unknown {
  const r = spawnSync(
    PYTHON,
    ["-c", `import sys; sys.path[:0] = ${JSON.stringify([PYTHON_DIR, join(PYTHON_DIR, "tests")])}\n${code}`],
    {
      encoding: "utf8",
      maxBuffer: 64 << 20,
    },
  );
  if (r.status !== 0) throw new Error(`python failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** Writes a tiny checkpoint (2 layers, vocab 97) and returns its folder. */
export function makeTinyCheckpoint(
  kind: "llama" | "qwen2" | "qwen3" | "mistral" = "llama",
  seed = 0,
): string {
  const dir = mkdtempSync(join(tmpdir(), `lmi-tiny-${kind}-`));
  runPython(
    `from test_executor_fixtures import make_checkpoint\nmake_checkpoint(${JSON.stringify(dir)}, "${kind}", seed=${seed})\nprint("null")`,
  );
  return dir;
}

/** Greedy continuation computed by the dense fp64 reference forward (independent of the executor). */
export function denseGreedy(
  _dir: string,
  kind: string,
  seed: number,
  prompt: number[],
  steps: number,
): number[] {
  return runPython(
    [
      "import json",
      "from test_executor_fixtures import make_checkpoint, dense_forward",
      "import tempfile",
      `ck = make_checkpoint(tempfile.mkdtemp(), "${kind}", seed=${seed})`,
      `seq = ${JSON.stringify(prompt)}`,
      `for _ in range(${steps}): seq.append(int(dense_forward(ck, seq)[-1].argmax()))`,
      `print(json.dumps(seq[${prompt.length}:]))`,
    ].join("\n"),
  ) as number[];
}
