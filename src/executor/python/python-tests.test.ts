// Runs the Python executor's unittest suite (python/tests/test_executor*.py) under node:test, so `npm test`
// covers it in CI on Debian's torch.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { describe, it } from "node:test";
import { PYTHON, PYTHON_DIR, torchMissing } from "./testing/python-env.ts";

describe("python executor unittest suite", () => {
  it("passes", { skip: torchMissing ?? false, timeout: 300_000 }, () => {
    const r = spawnSync(PYTHON, ["-m", "unittest", "discover", "-s", "tests", "-p", "test_executor*.py"], {
      cwd: PYTHON_DIR,
      encoding: "utf8",
    });
    const tail = r.stderr.split("\n").slice(-30).join("\n");
    assert.equal(r.status, 0, tail);
    assert.match(r.stderr, /Ran \d+ tests/);
    assert.doesNotMatch(r.stderr, /Ran 0 tests/);
  });
});
