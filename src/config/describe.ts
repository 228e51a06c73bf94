// Renders configuration for people: the effective model configuration as an aligned table (key, value,
// source, "here:" note) and the schema table itself (`lmi config --schema`, docs/configuration.md).
// Invariant: pure functions from data to text; what they print is exactly the loader's result or the schema.
import { isDeprecated, type KeyDef, SCHEMA, type SchemaEntry } from "./schema/index.ts";

export interface EffectiveView {
  properties: Record<string, unknown>;
  sources: Record<string, string>;
  notes: Record<string, string>;
  warnings: string[];
}

function show(value: unknown): string {
  if (typeof value === "string") return value;
  if (Array.isArray(value)) return value.join(";");
  if (value && typeof value === "object") {
    return Object.entries(value)
      .map(([k, v]) => `${k}=${v}`)
      .join(",");
  }
  return String(value);
}

function alignedRows(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows
    .map((r) =>
      r
        .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i])))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

/** The human form of `lmi config`: one row per key, then the warnings. */
export function formatEffective(view: EffectiveView): string {
  const rows = [["KEY", "VALUE", "SOURCE", "HERE"]];
  for (const [key, value] of Object.entries(view.properties)) {
    rows.push([key, show(value), view.sources[key] ?? "", view.notes[key] ?? ""]);
  }
  let out = `${alignedRows(rows)}\n`;
  if (view.warnings.length > 0) out += `\nWarnings:\n${view.warnings.map((w) => `  - ${w}`).join("\n")}\n`;
  return out;
}

function defaultText(e: KeyDef): string {
  if (e.defaultText) return e.defaultText;
  if (e.default === undefined || typeof e.default === "function") return "";
  return e.kind.format(e.default);
}

export interface SchemaRow {
  key: string;
  scope: string;
  type: string;
  default: string;
  backends: string;
  description: string;
  here: string;
  replacement?: string;
}

export function schemaRows(entries: readonly SchemaEntry[] = SCHEMA): SchemaRow[] {
  return entries.map((e) => {
    const common = {
      key: e.key,
      scope: e.scope,
      backends: e.backends.join(", "),
      description: e.description,
      here: e.here,
    };
    if (isDeprecated(e)) return { ...common, type: "deprecated", default: "", replacement: e.replacement };
    const device = e.deviceScoped ? " (also gpu./cpu./neuron. prefixed)" : "";
    return { ...common, type: e.kind.describe + device, default: defaultText(e) };
  });
}

/** `lmi config --schema`: every key of the table with its type, default and notes. */
export function formatSchema(entries: readonly SchemaEntry[] = SCHEMA): string {
  return schemaRows(entries)
    .map((r) =>
      [
        `${r.key}  [${r.scope}]`,
        `  type: ${r.type}${r.replacement ? ` -> use ${r.replacement}` : ""}`,
        ...(r.default ? [`  default: ${r.default}`] : []),
        `  read by: ${r.backends || "this server only"}`,
        `  ${r.description}`,
        `  here: ${r.here}`,
      ].join("\n"),
    )
    .join("\n\n")
    .concat("\n");
}

const GROUPS: Array<[string, string]> = [
  ["server", "Server keys (config.properties, SERVING_<KEY>)"],
  ["shared", "Per-model keys with a server-wide default"],
  ["model", "Per-model keys (serving.properties, OPTION_<NAME>)"],
];

/** `lmi config --schema --markdown`: the reference section of docs/configuration.md. */
export function formatSchemaMarkdown(entries: readonly SchemaEntry[] = SCHEMA): string {
  const esc = (s: string) => s.replaceAll("|", "\\|");
  const rows = schemaRows(entries);
  let out = "";
  for (const [scope, title] of GROUPS) {
    out += `### ${title}\n\n| key | type | default | LMI readers | meaning in LMI | here |\n|---|---|---|---|---|---|\n`;
    for (const r of rows.filter((x) => x.scope === scope && x.type !== "deprecated")) {
      out += `| \`${r.key}\` | ${esc(r.type)} | ${esc(r.default)} | ${esc(r.backends || "this server only")} | ${esc(r.description)} | ${esc(r.here)} |\n`;
    }
    out += "\n";
  }
  out += "### Deprecated keys\n\n| key | replaced by | meaning in LMI | here |\n|---|---|---|---|\n";
  for (const r of rows.filter((x) => x.type === "deprecated")) {
    out += `| \`${r.key}\` | \`${r.replacement}\` | ${esc(r.description)} | ${esc(r.here)} |\n`;
  }
  return out;
}
