// Measurement (not a test): worst deviation of the CPU executor's forward pass from the transformers fp32
// goldens, per model: max |Δ log_softmax| over every golden position and vocab entry, and max |Δ logit|
// over the last position's golden top 20. The conformance suite asserts a tolerance; this shows the margin.
// Run: node --import tsx bench/cpu-golden-diff.ts [model dirs...] (default: models/tiny-kjv models/zoo/*)
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createForward, loadModel } from "../src/executor/cpu/model.ts";
import { logSoftmax } from "../src/executor/cpu/sampler.ts";
import type { Golden } from "../test/conformance/golden.ts";

const dirs =
  process.argv.length > 2
    ? process.argv.slice(2)
    : ["models/tiny-kjv", ...readdirSync("models/zoo").map((d) => join("models/zoo", d))];
for (const dir of dirs) {
  if (!existsSync(join(dir, "golden.json"))) continue;
  const m = loadModel(dir);
  const g = JSON.parse(readFileSync(join(dir, "golden.json"), "utf8")) as Golden;
  let worstLp = 0;
  let worstLogit = 0;
  for (const c of g.cases) {
    const blocks = Math.ceil(c.input_ids.length / 16);
    const fwd = createForward(m, blocks, 16, 0);
    const table = Array.from({ length: blocks }, (_, i) => i);
    const logits = fwd.forward([
      { tokens: c.input_ids, startPos: 0, blockTable: table, logits: "all", hidden: false },
    ])[0].logits;
    for (const { position, values } of c.logsoftmax) {
      const l = logSoftmax(logits[position]);
      for (let v = 0; v < values.length; v++) worstLp = Math.max(worstLp, Math.abs(l[v] - values[v]));
    }
    const last = logits[logits.length - 1];
    c.last_top20.ids.forEach((id, k) => {
      worstLogit = Math.max(worstLogit, Math.abs(last[id] - c.last_top20.logits[k]));
    });
  }
  console.log(
    `${dir}\t${m.spec.architecture}\t${m.dtype}\tmax|Δlogprob| ${worstLp.toExponential(2)}\tmax|Δlogit| ${worstLogit.toExponential(2)}`,
  );
}
