// The sweep chart: axis rounding, and that each point lands where its values put it.
import assert from "node:assert/strict";
import { test } from "node:test";
import { niceAxis, sweepChartSvg } from "./chart.ts";

test("niceAxis rounds up to 1/2/5 steps", () => {
  assert.deepEqual(niceAxis(0), { top: 1, step: 0.2 });
  assert.deepEqual(niceAxis(9), { top: 10, step: 2 });
  assert.deepEqual(niceAxis(1234), { top: 1500, step: 500 }); // raw step 246.8 -> 500
  const small = niceAxis(0.031);
  assert.ok(Math.abs(small.top - 0.04) < 1e-12 && Math.abs(small.step - 0.01) < 1e-12);
});

test("points are placed by value, labelled, and nulls are skipped", () => {
  const svg = sweepChartSvg(
    "t",
    [{ key: "tpot", title: "median TPOT" }],
    [
      {
        name: "ours <gpu>",
        points: [
          { label: "c=1", outputTokPerS: 0, values: { tpot: 0 } },
          { label: "c=8", outputTokPerS: 1000, values: { tpot: 10 } },
          { label: "c=64", outputTokPerS: 500, values: { tpot: null } },
        ],
      },
    ],
  );
  assert.ok(svg.startsWith("<svg"));
  // Plot area: x from 64 to 64+380, y from 36+236 (value 0) up to 36 (axis top 10).
  assert.match(svg, /<circle cx="64.0" cy="272.0"/);
  assert.match(svg, /<circle cx="444.0" cy="36.0"/);
  assert.equal((svg.match(/<circle/g) ?? []).length, 2);
  assert.match(svg, />c=8</);
  assert.ok(!svg.includes(">c=64<"));
  assert.match(svg, /ours &lt;gpu&gt;/);
});
