// Draws the concurrency-sweep chart as a self-contained SVG (no chart library): one panel per latency
// metric, x = output throughput (tok/s), y = that latency (ms), one polyline per series with each point
// labelled by its concurrency. Points whose value is null are left out; scales start at zero.

export interface ChartPoint {
  label: string;
  outputTokPerS: number;
  /** Latencies in ms by panel key, e.g. { tpot: 12.1, ttft: 80 }. */
  values: Record<string, number | null>;
}
export interface ChartSeries {
  name: string;
  points: ChartPoint[];
}
export interface ChartPanel {
  key: string;
  title: string;
}

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];
const PW = 460;
const PH = 320;
const M = { l: 64, r: 16, t: 36, b: 48 };

const esc = (s: string) =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

/** A "nice" axis maximum and step: 1, 2 or 5 times a power of ten, about five ticks. */
export function niceAxis(max: number): { top: number; step: number } {
  if (!(max > 0)) return { top: 1, step: 0.2 };
  const raw = max / 5;
  const pow = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((k) => k * pow).find((s) => s >= raw) ?? 10 * pow;
  return { top: Math.ceil(max / step) * step, step };
}

const fmt = (v: number) => (Math.abs(v) >= 1000 ? `${+(v / 1000).toFixed(1)}k` : `${+v.toPrecision(3)}`);

function panel(p: ChartPanel, series: ChartSeries[], ox: number, title: string): string {
  const pts = series.map((s) => s.points.filter((q) => typeof q.values[p.key] === "number"));
  const xs = pts.flat().map((q) => q.outputTokPerS);
  const ys = pts.flat().map((q) => q.values[p.key] as number);
  const xa = niceAxis(Math.max(0, ...xs));
  const ya = niceAxis(Math.max(0, ...ys));
  const w = PW - M.l - M.r;
  const h = PH - M.t - M.b;
  const X = (v: number) => ox + M.l + (v / xa.top) * w;
  const Y = (v: number) => M.t + h - (v / ya.top) * h;
  const out: string[] = [
    `<text x="${ox + PW / 2}" y="20" text-anchor="middle" font-weight="bold">${esc(title)}</text>`,
    `<rect x="${ox + M.l}" y="${M.t}" width="${w}" height="${h}" fill="none" stroke="#333"/>`,
  ];
  for (let v = 0; v <= xa.top + 1e-9; v += xa.step) {
    out.push(`<line x1="${X(v)}" y1="${M.t}" x2="${X(v)}" y2="${M.t + h}" stroke="#eee"/>`);
    out.push(`<text x="${X(v)}" y="${M.t + h + 16}" text-anchor="middle">${fmt(v)}</text>`);
  }
  for (let v = 0; v <= ya.top + 1e-9; v += ya.step) {
    out.push(`<line x1="${ox + M.l}" y1="${Y(v)}" x2="${ox + M.l + w}" y2="${Y(v)}" stroke="#eee"/>`);
    out.push(`<text x="${ox + M.l - 6}" y="${Y(v) + 4}" text-anchor="end">${fmt(v)}</text>`);
  }
  out.push(
    `<text x="${ox + M.l + w / 2}" y="${PH - 10}" text-anchor="middle">output throughput (tok/s)</text>`,
    `<text transform="translate(${ox + 16},${M.t + h / 2}) rotate(-90)" text-anchor="middle">${esc(p.title)} (ms)</text>`,
  );
  pts.forEach((ps, i) => {
    const c = COLORS[i % COLORS.length];
    const coords = ps.map(
      (q) => `${X(q.outputTokPerS).toFixed(1)},${Y(q.values[p.key] as number).toFixed(1)}`,
    );
    if (ps.length > 1)
      out.push(`<polyline points="${coords.join(" ")}" fill="none" stroke="${c}" stroke-width="2"/>`);
    ps.forEach((q, k) => {
      const [x, y] = coords[k].split(",");
      out.push(`<circle cx="${x}" cy="${y}" r="3.5" fill="${c}"/>`);
      out.push(`<text x="${+x + 5}" y="${+y - 5}" fill="${c}" font-size="10">${esc(q.label)}</text>`);
    });
  });
  return out.join("\n");
}

export function sweepChartSvg(title: string, panels: ChartPanel[], series: ChartSeries[]): string {
  const width = PW * panels.length;
  const legendH = 20 * series.length + 10;
  const body = panels.map((p, i) => panel(p, series, i * PW, `${title}: ${p.title}`));
  const legend = series.map((s, i) => {
    const y = PH + 14 + i * 20;
    const c = COLORS[i % COLORS.length];
    return `<rect x="${M.l}" y="${y - 9}" width="12" height="12" fill="${c}"/><text x="${M.l + 18}" y="${y + 1}">${esc(s.name)}</text>`;
  });
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${PH + legendH}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    ...body,
    ...legend,
    "</svg>",
    "",
  ].join("\n");
}
