// Runs the djl_python unit tests (python/tests/test_djl_*.py, standard library only) so `npm test`
// covers the Python side of the handler path. Fails with unittest's own report when any test fails.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../..", import.meta.url));
const python = process.env.PYTHON_EXECUTABLE ?? "python3";

test("python/tests/test_djl_*.py pass", () => {
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
});
