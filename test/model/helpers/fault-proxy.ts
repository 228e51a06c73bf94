// Test helper: an HTTP forwarder on 127.0.0.1 in front of a real server that counts requests and can
// cut chosen responses after N body bytes (a dropped connection mid-download). Headers pass through
// unchanged (including Host), so SigV4 signatures made for the proxy's address still verify.
import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";

export interface Fault {
  /** Which requests to cut; called once per request. */
  match: (req: IncomingMessage) => boolean;
  /** Body bytes to forward before destroying the connection. */
  afterBytes: number;
  /** How many matching requests to cut; default 1. */
  times?: number;
}

export interface FaultProxy {
  url: string;
  /** Every forwarded request as "METHOD path" with its Range header, in order. */
  requests: { method: string; path: string; range?: string; auth?: string }[];
  faults: Fault[];
  /** Requests that were cut. */
  cut: number;
  /** Delay before forwarding each ranged GET (so parallel parts overlap measurably); default 0. */
  getDelayMs: number;
  /** Most ranged GETs open at once since the last reset to 0. */
  maxInFlight: number;
  close(): Promise<void>;
}

export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const t = new URL(target);
  const state: FaultProxy = {
    url: "",
    requests: [],
    faults: [],
    cut: 0,
    getDelayMs: 0,
    maxInFlight: 0,
    close: async () => {},
  };
  let inFlight = 0;
  const server: Server = createServer((req, res) => {
    const rangedGet = req.method === "GET" && req.headers.range !== undefined;
    if (rangedGet) {
      inFlight++;
      state.maxInFlight = Math.max(state.maxInFlight, inFlight);
      res.on("close", () => inFlight--);
    }
    if (rangedGet && state.getDelayMs > 0) setTimeout(() => forward(req, res), state.getDelayMs);
    else forward(req, res);
  });

  function forward(req: IncomingMessage, res: ServerResponse): void {
    state.requests.push({
      method: req.method ?? "",
      path: req.url ?? "",
      range: req.headers.range,
      auth: req.headers.authorization,
    });
    const fault = state.faults.find((f) => (f.times ?? 1) > 0 && f.match(req));
    if (fault) fault.times = (fault.times ?? 1) - 1;
    const up = httpRequest(
      { host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        if (!fault) {
          upRes.pipe(res);
          return;
        }
        let sent = 0;
        upRes.on("data", (chunk: Buffer) => {
          if (sent >= fault.afterBytes) return;
          const take = chunk.subarray(0, fault.afterBytes - sent);
          sent += take.length;
          const cutNow = sent >= fault.afterBytes;
          // Let the headers and these bytes reach the client first: a cut mid-body, not before it.
          res.write(take, () => {
            if (cutNow) setTimeout(() => res.socket?.destroy(), 20);
          });
          if (cutNow) {
            state.cut++;
            upRes.destroy();
          }
        });
      },
    );
    up.on("error", () => res.destroy());
    req.pipe(up);
  }
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  state.close = () =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  return state;
}
