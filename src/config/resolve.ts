// Turns raw string entries (each with its source) into typed values for a list of schema entries:
// parse, apply backend-name fallbacks, then fill defaults (static, computed, or an outer scope's value).
// Invariants: never throws on bad input; every problem and warning starts with the source location of the
// value involved ("dir/serving.properties:4: ...", "env OPTION_DTYPE: ..."); defaults are computed lazily so
// a computed default may depend on any other key of the scope, explicit or defaulted.
import type { DefaultContext, KeyDef } from "./schema/index.ts";

export interface RawValue {
  raw: string;
  /** Where the value came from: "path:line", "env NAME", "alias of engine=DeepSpeed", ... */
  source: string;
}

export type RawProps = Map<string, RawValue>;

export interface Resolved {
  /** key -> typed value, for every key that has one (explicit or default). */
  values: Map<string, unknown>;
  /** key -> source; defaults read "default". */
  sources: Map<string, string>;
  /** keys that were set (not defaulted). */
  explicit: Set<string>;
}

export interface OuterDefault {
  value: unknown;
  source: string;
}

export function badValue(key: string, value: RawValue, error: string): string {
  return `${value.source}: ${key}: invalid value "${value.raw}": ${error}`;
}

export function resolveKeys(
  raw: RawProps,
  defs: readonly KeyDef[],
  env: NodeJS.ProcessEnv,
  problems: string[],
  warnings: string[],
  outerDefaults: ReadonlyMap<string, OuterDefault> = new Map(),
): Resolved {
  const byKey = new Map(defs.map((d) => [d.key, d]));
  const values = new Map<string, unknown>();
  const sources = new Map<string, string>();
  const explicit = new Set<string>();

  for (const [key, value] of raw) {
    const def = byKey.get(key);
    if (!def) continue;
    const parsed = def.kind.parse(value.raw);
    if ("error" in parsed) {
      problems.push(badValue(key, value, parsed.error));
      continue;
    }
    values.set(key, parsed.value);
    sources.set(key, value.source);
    explicit.add(key);
    const warning = def.warnWhen?.(parsed.value);
    if (warning) warnings.push(`${value.source}: ${key}=${value.raw.trim()} ${warning}`);
  }

  // A backend's own name for a key we read (tokens_per_block -> block_size) fills it when unset.
  for (const def of defs) {
    if (!def.fallbackFor || !explicit.has(def.key)) continue;
    const target = byKey.get(def.fallbackFor);
    if (!target) continue;
    const asText = def.kind.format(values.get(def.key));
    const parsed = target.kind.parse(asText);
    const source = `${sources.get(def.key)} (from ${def.key})`;
    if (explicit.has(def.fallbackFor)) {
      const mine = values.get(def.fallbackFor);
      if (def.strictAlias && values.has(def.fallbackFor) && (!("value" in parsed) || parsed.value !== mine)) {
        problems.push(
          `${sources.get(def.key)}: ${def.key}=${asText} conflicts with ${def.fallbackFor}=${target.kind.format(mine)} ` +
            `(${sources.get(def.fallbackFor)}); they name the same setting, set only one`,
        );
      }
      continue;
    }
    if ("error" in parsed) {
      problems.push(badValue(def.fallbackFor, { raw: asText, source }, parsed.error));
      continue;
    }
    values.set(def.fallbackFor, parsed.value);
    sources.set(def.fallbackFor, source);
    explicit.add(def.fallbackFor);
  }

  const resolving = new Set<string>();
  const ctx: DefaultContext = {
    value: (key) => resolveKey(key),
    isSet: (key) => explicit.has(key),
    env,
  };
  function resolveKey(key: string): unknown {
    if (values.has(key)) return values.get(key);
    const def = byKey.get(key);
    if (!def || resolving.has(key)) return undefined;
    resolving.add(key);
    try {
      const outer = outerDefaults.get(key);
      if (outer !== undefined) {
        values.set(key, outer.value);
        sources.set(key, outer.source);
        return outer.value;
      }
      const spec = def.default;
      const value = typeof spec === "function" ? (spec as (c: DefaultContext) => unknown)(ctx) : spec;
      if (value !== undefined) {
        values.set(key, value);
        sources.set(key, "default");
      }
      return value;
    } finally {
      resolving.delete(key);
    }
  }
  for (const def of defs) resolveKey(def.key);
  return { values, sources, explicit };
}
