// Test helper: a local HTTP server implementing the Hugging Face Hub endpoints that @huggingface/hub
// calls for a download — revision info, recursive tree, and resolve with Range — with hub-style
// errors (404 + X-Error-Code RepoNotFound/RevisionNotFound/EntryNotFound, 401 for private repos
// without a valid Bearer token). Records every request; can cut a file's body after N bytes.
import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface HubRepo {
  /** revision name (branch/tag) → commit sha → files. */
  refs: Record<string, string>;
  commits: Record<string, Record<string, Buffer>>;
  /** When set, every request must carry `Authorization: Bearer <token>`. */
  token?: string;
  /** A gated repo whose terms the token's user has not accepted: 403 on every request. */
  forbidden?: boolean;
}

export interface HubCut {
  path: string;
  /** Only cut requests with exactly this Range header. */
  range?: string;
  afterBytes: number;
  times: number;
}

export interface MockHub {
  url: string;
  repos: Map<string, HubRepo>;
  requests: { method: string; url: string; range?: string; auth?: string }[];
  cuts: HubCut[];
  /** "org/name/path" files served slowly: `chunkBytes` every `delayMs` (to interrupt a download). */
  slow: Map<string, { chunkBytes: number; delayMs: number }>;
  close(): Promise<void>;
}

const digests = new WeakMap<Buffer, Map<string, string>>();

/** Hash of a file body, memoised: the tree and resolve routes ask for it on every request. */
function digest(algo: "sha1" | "sha256", body: Buffer): string {
  const byAlgo = digests.get(body) ?? new Map<string, string>();
  digests.set(body, byAlgo);
  const d = byAlgo.get(algo) ?? createHash(algo).update(body).digest("hex");
  byAlgo.set(algo, d);
  return d;
}

export function commitSha(seed: string): string {
  return createHash("sha1").update(seed).digest("hex");
}

function sendJson(res: ServerResponse, status: number, body: unknown, errorCode?: string): void {
  res.writeHead(status, {
    "Content-Type": "application/json",
    ...(errorCode ? { "X-Error-Code": errorCode } : {}),
  });
  res.end(JSON.stringify(body));
}

export async function startMockHub(): Promise<MockHub> {
  const hub: MockHub = {
    url: "",
    repos: new Map(),
    requests: [],
    cuts: [],
    slow: new Map(),
    close: async () => {},
  };

  function findRepo(path: string): { name: string; repo: HubRepo; rest: string } | null {
    for (const [name, repo] of hub.repos) {
      if (path.startsWith(`${name}/`)) return { name, repo, rest: path.slice(name.length + 1) };
    }
    return null;
  }

  function commitOf(repo: HubRepo, rev: string): string | null {
    const r = decodeURIComponent(rev);
    if (repo.commits[r]) return r;
    return repo.refs[r] ?? null;
  }

  function handle(req: IncomingMessage, res: ServerResponse): void {
    const u = new URL(req.url ?? "/", "http://hub");
    hub.requests.push({
      method: req.method ?? "",
      url: u.pathname,
      range: req.headers.range,
      auth: req.headers.authorization,
    });
    const api = u.pathname.startsWith("/api/models/");
    const found = findRepo(api ? u.pathname.slice("/api/models/".length) : u.pathname.slice(1));
    if (!found) {
      sendJson(res, 404, { error: "Repository not found" }, "RepoNotFound");
      return;
    }
    const { name, repo, rest } = found;
    if (repo.token && req.headers.authorization !== `Bearer ${repo.token}`) {
      sendJson(res, 401, { error: "Invalid username or password." }, "RepoNotFound");
      return;
    }
    if (repo.forbidden) {
      sendJson(res, 403, {
        error: `Access to model ${name} is restricted and you are not in the authorized list.`,
      });
      return;
    }
    const [kind, rev, ...pathParts] = rest.split("/");
    const commit = rev === undefined ? null : commitOf(repo, rev);
    if (!commit) {
      sendJson(res, 404, { error: `Invalid rev id: ${rev}` }, "RevisionNotFound");
      return;
    }
    const files = repo.commits[commit];
    if (api && kind === "revision") {
      sendJson(res, 200, {
        _id: `id-${name}`,
        id: name,
        sha: commit,
        private: !!repo.token,
        lastModified: "2026-01-01T00:00:00.000Z",
      });
      return;
    }
    if (api && kind === "tree") {
      const list = Object.entries(files).map(([path, body]) => ({
        type: "file",
        path,
        size: body.length,
        oid: digest("sha1", body),
        ...(path.endsWith(".safetensors") || path.endsWith(".bin")
          ? {
              lfs: {
                oid: digest("sha256", body),
                size: body.length,
                pointerSize: 130,
              },
            }
          : {}),
      }));
      sendJson(res, 200, list);
      return;
    }
    if (!api && kind === "resolve") {
      serveFile(req, res, `${name}/${pathParts.join("/")}`, pathParts.join("/"), files);
      return;
    }
    sendJson(res, 404, { error: "not found" });
    return;
  }

  function serveFile(
    req: IncomingMessage,
    res: ServerResponse,
    repoPath: string,
    path: string,
    files: Record<string, Buffer>,
  ): void {
    const body = files[path];
    if (!body) {
      sendJson(res, 404, { error: "Entry not found" }, "EntryNotFound");
      return;
    }
    const etag = `"${digest("sha256", body)}"`;
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
    let start = 0;
    let end = body.length - 1;
    if (m) {
      start = Number(m[1]);
      end = m[2] ? Math.min(Number(m[2]), body.length - 1) : body.length - 1;
    }
    const slice = body.subarray(start, end + 1);
    const headers: Record<string, string | number> = {
      ETag: etag,
      "Content-Length": slice.length,
      "Accept-Ranges": "bytes",
    };
    if (m) headers["Content-Range"] = `bytes ${start}-${end}/${body.length}`;
    res.writeHead(m ? 206 : 200, headers);
    if (req.method === "HEAD") {
      res.end();
      return;
    }
    const cut = hub.cuts.find(
      (c) =>
        c.path === path &&
        c.times > 0 &&
        slice.length > c.afterBytes &&
        (!c.range || c.range === req.headers.range),
    );
    const slow = hub.slow.get(repoPath);
    if (slow && !cut) {
      let at = 0;
      const timer = setInterval(() => {
        res.write(slice.subarray(at, at + slow.chunkBytes));
        at += slow.chunkBytes;
        if (at >= slice.length) {
          clearInterval(timer);
          res.end();
        }
      }, slow.delayMs);
      res.on("close", () => clearInterval(timer));
      return;
    }
    if (!cut) {
      res.end(slice);
      return;
    }
    cut.times--;
    // Send part of the body, let it reach the client, then drop the connection.
    res.write(slice.subarray(0, cut.afterBytes), () => setTimeout(() => res.socket?.destroy(), 20));
  }

  const server = createServer(handle);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  hub.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  hub.close = () =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  return hub;
}
