// The one configuration schema table: every key this server reads, one entry each, assembled from the
// per-area parts (server, common model, backend-specific, deprecated). `lmi config` and the docs print it.
// Invariants: keys are unique across the whole table (checked at load); ModelConfig and ServerConfig are
// the typed camelCase views of the entries of their scope.
import { BACKEND_KEYS } from "./backend-keys.ts";
import { DEPRECATED_KEYS } from "./deprecated-keys.ts";
import { MODEL_KEYS } from "./model-keys.ts";
import { SERVER_KEYS, SHARED_KEYS } from "./server-keys.ts";
import { type ConfigOf, type DeprecatedDef, isDeprecated, type KeyDef, type SchemaEntry } from "./types.ts";

export { OUTPUT_FORMATTERS, ROLLING_BATCH_VALUES } from "./model-keys.ts";
export type { DefaultContext, DeprecatedDef, KeyDef, SchemaEntry, Scope } from "./types.ts";
export { isDeprecated } from "./types.ts";

export const SCHEMA: readonly SchemaEntry[] = [
  ...SERVER_KEYS,
  ...SHARED_KEYS,
  ...MODEL_KEYS,
  ...BACKEND_KEYS,
  ...DEPRECATED_KEYS,
];

const byKey = new Map<string, SchemaEntry>();
for (const entry of SCHEMA) {
  if (byKey.has(entry.key)) throw new Error(`schema: duplicate key ${entry.key}`);
  byKey.set(entry.key, entry);
}

export function schemaEntry(key: string): SchemaEntry | undefined {
  return byKey.get(key);
}

/** Typed entries (not deprecated) read for a model: model keys plus the shared server keys. */
export const MODEL_SCOPE_KEYS: readonly KeyDef[] = SCHEMA.filter(
  (e): e is KeyDef => !isDeprecated(e) && e.scope !== "server",
);
/** Typed entries read from config.properties / SERVING_*: server keys plus the shared ones. */
export const SERVER_SCOPE_KEYS: readonly KeyDef[] = SCHEMA.filter(
  (e): e is KeyDef => !isDeprecated(e) && e.scope !== "model",
);
export const MODEL_DEPRECATED: readonly DeprecatedDef[] = DEPRECATED_KEYS.filter((e) => e.scope !== "server");

/** Per-model typed values, camelCase, one field per model-scope key. */
export type ModelValues = ConfigOf<
  readonly [...typeof MODEL_KEYS, ...typeof BACKEND_KEYS, ...typeof SHARED_KEYS]
>;
/** Server typed values, camelCase, one field per server-scope key. */
export type ServerValues = ConfigOf<readonly [...typeof SERVER_KEYS, ...typeof SHARED_KEYS]>;
