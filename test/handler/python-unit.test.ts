// Runs the djl_python unit tests (python/tests/test_djl_*.py) so `npm test` covers the Python side of
// the handler path: once with the python3 on PATH (standard library only), and once with Debian's
// /usr/bin/python3 when that is a different interpreter (it may have torch: the TorchStepper test).

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, realpathSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../..", import.meta.url));

function runUnittest(python: string): void {
  const res = spawnSync(
    python,
    ["-m", "unittest", "discover", "-s", "python/tests", "-p", "test_djl_*.py", "-v"],
    {
      cwd: root,
      encoding: "utf8",
      timeout: 120_000,
    },
  );
  assert.equal(res.error, undefined, `could not run ${python}: ${res.error}`);
  const report = `${res.stdout}\n${res.stderr}`;
  assert.equal(res.status, 0, report);
  const ran = /Ran (\d+) tests?/.exec(report);
  assert.ok(ran && Number(ran[1]) > 0, `no Python tests ran:\n${report}`);
}

function resolveOnPath(name: string): string | null {
  const res = spawnSync(name, ["-c", "import sys; print(sys.executable)"], { encoding: "utf8" });
  return res.status === 0 ? res.stdout.trim() : null;
}

const pathPython = process.env.PYTHON_EXECUTABLE ?? "python3";
const debianPython = "/usr/bin/python3";
const pathExe = resolveOnPath(pathPython);
const sameInterpreter =
  !existsSync(debianPython) || (pathExe !== null && realpathSync(pathExe) === realpathSync(debianPython));

test(`python/tests/test_djl_*.py pass with ${pathPython}`, () => runUnittest(pathPython));

test(
  "python/tests/test_djl_*.py pass with /usr/bin/python3",
  { skip: sameInterpreter ? "/usr/bin/python3 is absent or is the python3 on PATH" : false },
  () => runUnittest(debianPython),
);
