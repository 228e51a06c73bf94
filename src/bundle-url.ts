// The single-file server bundle (scripts/gpu/bundle-entry.ts) sets __lmiBundleUrl to its own URL. Code that starts
// a worker thread from a script beside its own module (the engine thread, the CPU executor thread) starts the bundle
// instead when it is set: the bundle's entry tells the threads apart by their workerData's `kind`.
declare global {
  var __lmiBundleUrl: string | undefined;
}

/** The script a worker thread runs: the bundle when running from one, else `script` (a URL beside the caller). */
export function threadScript(script: URL): URL {
  const bundle = globalThis.__lmiBundleUrl;
  return bundle !== undefined ? new URL(bundle) : script;
}
