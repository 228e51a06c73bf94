// Classifies a model_id the way DJL does (spec §1.3, §1.10): an existing local directory first
// (also `file://`), then `s3://bucket[/prefix]`, then a Hugging Face hub id `name` or `org/name`.
// Pure apart from one stat of the local path; never touches the network.
import { statSync } from "node:fs";
import { homedir } from "node:os";
import { resolve } from "node:path";
import { InvalidModelIdError } from "./errors.ts";

export type ModelSpec =
  | { kind: "local"; path: string }
  | { kind: "s3"; url: string; bucket: string; prefix: string }
  | { kind: "hub"; repo: string };

// Hub repo names: letters, digits, "-", "_", "." ; no "--" or ".." (hub rules, also keeps cache paths safe).
const HUB_PART = /^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$/;

function expandHome(p: string): string {
  return p === "~" || p.startsWith("~/") ? homedir() + p.slice(1) : p;
}

function isDirectory(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function looksLikePath(id: string): boolean {
  return (
    id.startsWith("/") || id.startsWith("./") || id.startsWith("../") || id.startsWith("~") || id === "."
  );
}

export function parseModelId(modelId: string, cwd = process.cwd()): ModelSpec {
  const id = modelId.trim();
  if (id === "") throw new InvalidModelIdError(modelId, "it is empty");
  if (id.startsWith("file://")) {
    const path = resolve(cwd, expandHome(decodeURIComponent(id.slice("file://".length))));
    return { kind: "local", path };
  }
  const localPath = resolve(cwd, expandHome(id));
  if (!/^[a-z0-9]+:\/\//i.test(id) && isDirectory(localPath)) return { kind: "local", path: localPath };
  if (id.startsWith("s3://")) return parseS3(modelId, id);
  if (/^[a-z0-9]+:\/\//i.test(id)) {
    throw new InvalidModelIdError(modelId, "only local directories, s3:// URLs and hub ids are supported");
  }
  if (looksLikePath(id)) return { kind: "local", path: localPath }; // reported missing by the resolver
  const parts = id.split("/");
  if (parts.length > 2 || !parts.every((p) => HUB_PART.test(p) && !p.includes("--") && !p.includes(".."))) {
    throw new InvalidModelIdError(
      modelId,
      "not an existing directory, and not a valid Hugging Face hub id (expected name or org/name)",
    );
  }
  return { kind: "hub", repo: id };
}

function parseS3(modelId: string, id: string): ModelSpec {
  const rest = id.slice("s3://".length);
  const slash = rest.indexOf("/");
  const bucket = slash < 0 ? rest : rest.slice(0, slash);
  const prefix = (slash < 0 ? "" : rest.slice(slash + 1)).replace(/\/+$/, "");
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
    throw new InvalidModelIdError(modelId, `"${bucket}" is not a valid S3 bucket name`);
  }
  const url = `s3://${bucket}${prefix ? `/${prefix}` : ""}`;
  return { kind: "s3", url, bucket, prefix };
}

/** True when resolving `modelId` would download (s3:// or a hub id that is not an existing local dir). */
export function isRemoteModelId(modelId: string, cwd = process.cwd()): boolean {
  try {
    return parseModelId(modelId, cwd).kind !== "local";
  } catch {
    return false;
  }
}
