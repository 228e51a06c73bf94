// `lmi download [MODEL_ID] [--revision R] [--dir D]`: fetches a model's artifacts (hub id, s3://,
// or a local dir to validate) without serving, printing the local directory on stdout so scripts
// can use it; progress and errors go to stderr. Light at import: the downloader loads in the action.
import { type Command, InvalidArgumentError } from "commander";

interface DownloadFlags {
  revision?: string;
  dir?: string;
  concurrency?: number;
  quiet?: boolean;
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("must be a positive integer");
  return n;
}

export function register(program: Command): void {
  program
    .command("download")
    .description(
      "Download a model's artifacts without serving: a Hugging Face hub id (org/name), s3://bucket/prefix, " +
        "or a local directory. Prints the local directory. Defaults to HF_MODEL_ID / HF_REVISION.",
    )
    .argument("[model_id]", "hub id, s3:// URL or local directory (default: $HF_MODEL_ID)")
    .option("-r, --revision <rev>", "hub branch, tag or commit (default: $HF_REVISION, else main)")
    .option(
      "-d, --dir <dir>",
      "download root: s3 goes to <dir>/download/<sha256(url)>, hub to <dir>/hub (default: SERVING_DOWNLOAD_DIR / HF_HOME)",
    )
    .option("-c, --concurrency <n>", "parallel transfers (default 16)", positiveInt)
    .option("-q, --quiet", "no progress output")
    .action(async (modelIdArg: string | undefined, flags: DownloadFlags) => {
      const modelId = modelIdArg ?? process.env.HF_MODEL_ID;
      if (!modelId) {
        process.stderr.write("lmi download: give a model id or set HF_MODEL_ID\n");
        process.exitCode = 2;
        return;
      }
      process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
      const { resolveModel } = await import("../model/resolve-model.ts");
      const ac = new AbortController();
      const onSigint = () => ac.abort();
      process.once("SIGINT", onSigint);
      try {
        const r = await resolveModel({
          modelId,
          revision: flags.revision ?? process.env.HF_REVISION,
          downloadDir: flags.dir,
          concurrency: flags.concurrency,
          signal: ac.signal,
          ...(flags.quiet ? { onProgress: null, log: () => {} } : {}),
        });
        process.stdout.write(`${r.localDir}\n`);
      } catch (err) {
        const e = err as { message?: string; status?: number };
        process.stderr.write(`lmi download: ${e.message ?? String(err)}\n`);
        process.exitCode = 1;
      } finally {
        process.off("SIGINT", onSigint);
      }
    });
}
