// The shape of one schema entry and the helpers the key tables are written with.
// Invariants: an entry's `field` is the camelCase name downstream code reads (ModelConfig/ServerConfig are
// derived from the tables by type, so a key cannot exist in the table without a typed field); an entry has
// a default exactly when its `D` type flag is true; deprecated entries have no field (they only rename).
import type { ValueKind } from "../value-kinds.ts";

/** server: config.properties / SERVING_*; model: serving.properties / OPTION_*; shared: both (per-model
 *  value, falling back to the server-wide one, spec §1.2 item 5). */
export type Scope = "server" | "model" | "shared";

/** What a computed default may look at. */
export interface DefaultContext {
  /** The typed value of another key of the same scope (explicit, or its own default). */
  value(key: string): unknown;
  /** Whether another key was set explicitly (file, env, alias), not defaulted. */
  isSet(key: string): boolean;
  env: NodeJS.ProcessEnv;
}

export type DefaultSpec<T> = T | ((ctx: DefaultContext) => T | undefined);

export interface KeyDef<F extends string = string, T = unknown, D extends boolean = boolean> {
  readonly key: string;
  readonly field: F;
  readonly kind: ValueKind<T>;
  readonly scope: Scope;
  /** LMI backends (or "server") that read the key in DJL Serving. */
  readonly backends: readonly string[];
  /** One line: what the key means in LMI. */
  readonly description: string;
  /** One line: what the key does in this server ("here:" note shown by `lmi config`). */
  readonly here: string;
  readonly hasDefault: D;
  readonly default?: DefaultSpec<T>;
  /** How a computed default is chosen, for docs and `lmi config` (static defaults print themselves). */
  readonly defaultText?: string;
  /** Also accepted as `gpu.<key>`, `cpu.<key>`, `neuron.<key>` (the device-type prefix wins). */
  readonly deviceScoped?: boolean;
  /** When set, the value also fills this other key if that key is not set (a backend's own name for it). */
  readonly fallbackFor?: string;
  /** With fallbackFor: both keys set to different values is a problem (vLLM's duplicate-name check). */
  readonly strictAlias?: boolean;
  /** A warning to print when the key is set to this value (e.g. it has no effect here). */
  warnWhen?(value: T): string | undefined;
}

/** A deprecated key: accepted with a warning and rewritten onto its replacement (unless that is set). */
export interface DeprecatedDef {
  readonly key: string;
  readonly scope: Scope;
  readonly replacement: string;
  readonly backends: readonly string[];
  readonly description: string;
  readonly here: string;
  /** The replacement's raw value for this raw value; undefined = nothing to carry over (e.g. false). */
  readonly map: (raw: string) => { value: string | undefined } | { error: string };
}

export type SchemaEntry = KeyDef | DeprecatedDef;

export function isDeprecated(e: SchemaEntry): e is DeprecatedDef {
  return "replacement" in e;
}

interface DefOptions<T> {
  scope?: Scope;
  backends: readonly string[];
  description: string;
  here: string;
  defaultText?: string;
  deviceScoped?: boolean;
  fallbackFor?: string;
  strictAlias?: boolean;
  warnWhen?(value: T): string | undefined;
}

export function def<const F extends string, T>(
  key: string,
  field: F,
  kind: ValueKind<T>,
  opts: DefOptions<T> & { default: DefaultSpec<T> },
): KeyDef<F, T, true>;
export function def<const F extends string, T>(
  key: string,
  field: F,
  kind: ValueKind<T>,
  opts: DefOptions<T>,
): KeyDef<F, T, false>;
export function def<const F extends string, T>(
  key: string,
  field: F,
  kind: ValueKind<T>,
  opts: DefOptions<T> & { default?: DefaultSpec<T> },
): KeyDef<F, T, boolean> {
  return {
    key,
    field,
    kind,
    scope: opts.scope ?? "model",
    backends: opts.backends,
    description: opts.description,
    here: opts.here,
    hasDefault: "default" in opts && opts.default !== undefined,
    default: opts.default,
    defaultText: opts.defaultText,
    deviceScoped: opts.deviceScoped,
    fallbackFor: opts.fallbackFor,
    strictAlias: opts.strictAlias,
    warnWhen: opts.warnWhen,
  };
}

/** The typed, camelCase object a table of entries describes (deprecated entries contribute nothing). */
export type ConfigOf<Defs extends readonly SchemaEntry[]> = {
  readonly [E in Defs[number] as E extends KeyDef<infer F, unknown, boolean> ? F : never]: E extends KeyDef<
    string,
    infer T,
    infer D
  >
    ? D extends true
      ? T
      : T | undefined
    : never;
};
