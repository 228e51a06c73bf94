// Value kinds of the configuration schema: how one raw string from a properties file or an env var becomes
// a typed value. Invariants: parsing never throws; a failure returns `{ error }` with a sentence saying
// what was expected (the caller adds key, value and source); matching is case-insensitive where LMI's is
// (booleans, dtypes, enums) and returns the canonical spelling; surrounding whitespace is ignored.

export type ParseResult<T> = { value: T } | { error: string };

export interface ValueKind<T> {
  /** What the kind accepts, for help text and errors: "true|false", "integer >= 1". */
  readonly describe: string;
  /** Allowed values of enum-like kinds (for did-you-mean and docs); undefined for open kinds. */
  readonly allowed?: readonly string[];
  parse(raw: string): ParseResult<T>;
  /** The string form the Python side (and `lmi config` text output) sees. */
  format(value: T): string;
}

export function bool(): ValueKind<boolean> {
  return {
    describe: "true|false",
    allowed: ["true", "false"],
    parse(raw) {
      const v = raw.trim().toLowerCase();
      if (v === "true") return { value: true };
      if (v === "false") return { value: false };
      return { error: "expected true or false (any case)" };
    },
    format: String,
  };
}

function rangeText(min?: number, max?: number): string {
  if (min !== undefined && max !== undefined) return ` in [${min}, ${max}]`;
  if (min !== undefined) return ` >= ${min}`;
  if (max !== undefined) return ` <= ${max}`;
  return "";
}

export function int(opts: { min?: number; max?: number } = {}): ValueKind<number> {
  const describe = `integer${rangeText(opts.min, opts.max)}`;
  return {
    describe,
    parse(raw) {
      const v = raw.trim();
      if (!/^[+-]?\d+$/.test(v)) return { error: `expected an ${describe}` };
      const n = Number(v);
      if (!Number.isSafeInteger(n)) return { error: `expected an ${describe} (too large)` };
      if ((opts.min !== undefined && n < opts.min) || (opts.max !== undefined && n > opts.max)) {
        return { error: `expected an ${describe}` };
      }
      return { value: n };
    },
    format: String,
  };
}

export function float(opts: { min?: number; max?: number; minExclusive?: boolean } = {}): ValueKind<number> {
  const low = opts.min === undefined ? "" : opts.minExclusive ? ` > ${opts.min}` : ` >= ${opts.min}`;
  const high = opts.max === undefined ? "" : ` <= ${opts.max}`;
  const describe = `number${low}${low && high ? " and" : ""}${high}`;
  return {
    describe,
    parse(raw) {
      const v = raw.trim();
      if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(v)) return { error: `expected a ${describe}` };
      const n = Number(v);
      const tooLow = opts.min !== undefined && (opts.minExclusive ? n <= opts.min : n < opts.min);
      if (tooLow || (opts.max !== undefined && n > opts.max)) return { error: `expected a ${describe}` };
      return { value: n };
    },
    format: String,
  };
}

/**
 * One of a fixed set, matched case-insensitively; `synonyms` maps other accepted spellings (lowercase)
 * to a canonical value. `openPattern` also accepts any value matching it (e.g. a handler function name).
 */
export function oneOf<const V extends string>(
  values: readonly V[],
  opts: { synonyms?: Record<string, V>; openPattern?: RegExp; openText?: string } = {},
): ValueKind<V> {
  const byLower = new Map<string, V>(values.map((v) => [v.toLowerCase(), v]));
  for (const [alias, target] of Object.entries(opts.synonyms ?? {})) byLower.set(alias.toLowerCase(), target);
  const describe = values.join("|") + (opts.openText ? ` or ${opts.openText}` : "");
  return {
    describe,
    allowed: values,
    parse(raw) {
      const v = raw.trim();
      const hit = byLower.get(v.toLowerCase());
      if (hit !== undefined) return { value: hit };
      if (opts.openPattern?.test(v)) return { value: v as V };
      return { error: `expected one of ${values.join(", ")}${opts.openText ? ` or ${opts.openText}` : ""}` };
    },
    format: String,
  };
}

/** false | true | one of `extra` (enable_streaming=huggingface). */
export function boolOr<const V extends string>(extra: readonly V[]): ValueKind<boolean | V> {
  const b = bool();
  return {
    describe: `true|false|${extra.join("|")}`,
    allowed: ["true", "false", ...extra],
    parse(raw) {
      const asBool = b.parse(raw);
      if ("value" in asBool) return asBool;
      const v = raw.trim().toLowerCase();
      const hit = extra.find((e) => e.toLowerCase() === v);
      if (hit !== undefined) return { value: hit };
      return { error: `expected one of true, false, ${extra.join(", ")}` };
    },
    format: String,
  };
}

/** Free text; `pattern` restricts it, `patternText` says how in errors. Empty is rejected. */
export function text(opts: { pattern?: RegExp; patternText?: string } = {}): ValueKind<string> {
  const describe = opts.patternText ?? "text";
  return {
    describe,
    parse(raw) {
      const v = raw.trim();
      if (v === "") return { error: `expected ${describe}, got an empty value` };
      if (opts.pattern && !opts.pattern.test(v)) return { error: `expected ${describe}` };
      return { value: v };
    },
    format: String,
  };
}

/** A positive integer or "max" (all devices): tensor_parallel_degree. */
export function intOrMax(): ValueKind<number | "max"> {
  const i = int({ min: 1 });
  return {
    describe: "integer >= 1 or max",
    parse(raw) {
      if (raw.trim().toLowerCase() === "max") return { value: "max" };
      const r = i.parse(raw);
      return "value" in r ? r : { error: "expected an integer >= 1 or max" };
    },
    format: String,
  };
}

/** load_on_devices: "*" (all) or a ';'-separated list of device ids, written "0" or "gpu0". */
export function deviceList(): ValueKind<"*" | number[]> {
  return {
    describe: "* or a ;-separated list of device ids (0;1 or gpu0;gpu1)",
    parse(raw) {
      const v = raw.trim();
      if (v === "*") return { value: "*" };
      const ids: number[] = [];
      for (const part of v.split(";")) {
        const m = /^(?:gpu|cpu|nc)?(\d+)$/i.exec(part.trim());
        if (!m) return { error: `expected * or a ;-separated list of device ids, bad entry "${part}"` };
        ids.push(Number(m[1]));
      }
      return { value: ids };
    },
    format: (value) => (value === "*" ? "*" : value.join(";")),
  };
}

/** option.env: "K=V,K2=V2" becomes extra environment variables of the worker processes. */
export function envMap(): ValueKind<Record<string, string>> {
  return {
    describe: "comma-separated NAME=value pairs",
    parse(raw) {
      const out: Record<string, string> = {};
      for (const part of raw.split(",")) {
        if (part.trim() === "") continue;
        const eq = part.indexOf("=");
        const name = eq < 0 ? "" : part.slice(0, eq).trim();
        if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
          return { error: `expected comma-separated NAME=value pairs, bad entry "${part.trim()}"` };
        }
        out[name] = part.slice(eq + 1).trim();
      }
      return { value: out };
    },
    format: (value) =>
      Object.entries(value)
        .map(([k, v]) => `${k}=${v}`)
        .join(","),
  };
}

/** An integer from a fixed set (block_size: powers of two the kernels support). */
export function intOneOf(values: readonly number[]): ValueKind<number> {
  const i = int();
  return {
    describe: values.join("|"),
    allowed: values.map(String),
    parse(raw) {
      const r = i.parse(raw);
      if ("value" in r && values.includes(r.value)) return r;
      return { error: `expected one of ${values.join(", ")}` };
    },
    format: String,
  };
}
