// Server-wide keys: config.properties (`-f`), `SERVING_<KEY>` env vars, and the keys every model falls back
// to (scope "shared": job_queue_size, batch_size, ...). Part of the one schema table (see schema/index.ts).
// Invariant: defaults follow DJL Serving's ConfigManager, or the LMI image where the two differ (spec §1.3).
import { homedir } from "node:os";
import { join } from "node:path";
import { bool, deviceList, int, text } from "../value-kinds.ts";
import { def } from "./types.ts";

const address = text({
  pattern: /^(https?:\/\/[^\s/]+(:\d+)?\/?|unix:.+)$/,
  patternText: "an address like http://0.0.0.0:8080, https://host:8443 or unix:/path",
});
const httpCode = int({ min: 100, max: 599 });
const S = { scope: "server", backends: ["server"] } as const;
const SH = { scope: "shared", backends: ["server"] } as const;

export const SERVER_KEYS = [
  def("inference_address", "inferenceAddress", address, {
    ...S,
    default: "http://127.0.0.1:8080",
    description: "Listener for the inference API (/invocations, /predictions, /ping).",
    here: "the HTTP listener the inference routes are served on; https:// turns on TLS",
  }),
  def("management_address", "managementAddress", address, {
    ...S,
    default: "http://127.0.0.1:8080",
    description: "Listener for the management API (/models, /server/*).",
    here: "the management routes' listener; one listener serves both APIs when the addresses are equal",
  }),
  def("cluster_address", "clusterAddress", address, {
    ...S,
    default: "http://127.0.0.1:8888",
    description: "DJL cluster-mode listener.",
    here: "accepted for compatibility; this server has no cluster mode, so nothing listens on it",
  }),
  def("model_store", "modelStore", text({ patternText: "a directory path" }), {
    ...S,
    description: "Directory scanned for models by load_models=ALL (the LMI image uses /opt/ml/model).",
    here: "same: each sub-directory (or the directory itself) becomes a model at startup",
  }),
  def(
    "load_models",
    "loadModels",
    text({ patternText: "ALL, NONE or [name[:version[:engine[:devices]]]=]url,..." }),
    {
      ...S,
      description:
        "Models to load at startup: ALL, NONE or a list of [name[:version[:engine[:devices]]]=]url.",
      here: "same; see resolveStartupModels() and docs/configuration.md",
    },
  ),
  def("max_request_size", "maxRequestSize", int({ min: 1 }), {
    ...S,
    default: 64 * 1024 * 1024,
    description: "Largest request body in bytes; larger requests get 413 (SageMaker env vars overwrite it).",
    here: "same: the HTTP body limit",
  }),
  def("chunked_read_timeout", "chunkedReadTimeout", int({ min: 1 }), {
    ...S,
    default: 120,
    description: "Seconds to wait for the next chunk of a streamed response before dropping it.",
    here: "same: a stream whose next token takes longer is ended and the request aborted",
  }),
  def(
    "request_id_header_key",
    "requestIdHeaderKey",
    text({ pattern: /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, patternText: "an HTTP header name" }),
    {
      ...S,
      default: "x-request-id",
      description: "Header carrying the request id (SageMaker: X-Amzn-SageMaker-Inference-Id).",
      here: "same: read from requests when present and always echoed on responses",
    },
  ),
  def("bad_request_http_code", "badRequestHttpCode", httpCode, {
    ...S,
    default: 400,
    description: "HTTP status for bad requests and translate errors.",
    here: "same",
  }),
  def("wlm_error_http_code", "wlmErrorHttpCode", httpCode, {
    ...S,
    default: 503,
    description: "HTTP status when the model is not ready or shut down.",
    here: "same",
  }),
  def("throttle_error_http_code", "throttleErrorHttpCode", httpCode, {
    ...S,
    default: 503,
    description: "HTTP status when the job queue is full.",
    here: "same",
  }),
  def("server_error_http_code", "serverErrorHttpCode", httpCode, {
    ...S,
    default: 500,
    description: "HTTP status for internal server errors.",
    here: "same",
  }),
  def("timeout_http_code", "timeoutHttpCode", httpCode, {
    ...S,
    default: 400,
    description: "HTTP status when a prediction times out.",
    here: "same",
  }),
  def("allow_multi_status", "allowMultiStatus", bool(), {
    ...S,
    default: false,
    description: "Let /ping answer 207 while some model is still loading.",
    here: "same",
  }),
  def("wait_model_loading", "waitModelLoading", bool(), {
    ...S,
    default: true,
    description: "Open the listener only after the startup models have loaded.",
    here: "same",
  }),
  def("model_url_pattern", "modelUrlPattern", text({ patternText: "a regular expression" }), {
    ...S,
    description: "Regex of model URLs that /predictions may auto-register through a model_url parameter.",
    here: "same; unset means no auto-registration",
  }),
  def("cors_allowed_origin", "corsAllowedOrigin", text(), {
    ...S,
    description: "Access-Control-Allow-Origin value.",
    here: "same; unset sends no CORS headers",
  }),
  def("cors_allowed_methods", "corsAllowedMethods", text(), {
    ...S,
    description: "Access-Control-Allow-Methods value.",
    here: "same",
  }),
  def("cors_allowed_headers", "corsAllowedHeaders", text(), {
    ...S,
    description: "Access-Control-Allow-Headers value.",
    here: "same",
  }),
  def("private_key_file", "privateKeyFile", text(), {
    ...S,
    description: "PEM private key for https:// listeners.",
    here: "same (Node's TLS reads PEM)",
  }),
  def("certificate_file", "certificateFile", text(), {
    ...S,
    description: "PEM certificate chain for https:// listeners.",
    here: "same",
  }),
  def("keystore", "keystore", text(), {
    ...S,
    description: "Java keystore for https:// listeners.",
    here: "Node TLS reads a PKCS12 keystore (with keystore_pass); a JKS keystore cannot be read, use PEM files",
  }),
  def("keystore_pass", "keystorePass", text(), {
    ...S,
    default: "changeit",
    description: "Keystore password.",
    here: "same",
  }),
  def("keystore_type", "keystoreType", text(), {
    ...S,
    default: "PKCS12",
    description: "Keystore type.",
    here: "only PKCS12 is read",
  }),
  def("number_of_netty_threads", "numberOfNettyThreads", int({ min: 0 }), {
    ...S,
    description: "Netty I/O threads.",
    here: "accepted for compatibility; Node serves HTTP on one event loop, so it changes nothing",
  }),
  def("prometheus", "prometheus", bool(), {
    ...S,
    default: false,
    description: "Enable the Prometheus registry and GET /server/metrics (env SERVING_PROMETHEUS).",
    here: "same",
  }),
  def("download_dir", "downloadDir", text({ patternText: "a directory path" }), {
    ...S,
    default: (ctx) => ctx.env.DJL_CACHE_DIR ?? join(homedir(), ".djl.ai"),
    defaultText: "$DJL_CACHE_DIR, else ~/.djl.ai",
    description: "Where s3:// downloads and extracted archives go (env SERVING_DOWNLOAD_DIR).",
    here: "same",
  }),
  def("fail_fast", "failFast", bool(), {
    ...S,
    default: false,
    description: "Exit with status 137 when a model exceeds retry_threshold (env SERVING_FAIL_FAST).",
    here: "same",
  }),
  def("health_check_override", "healthCheckOverride", bool(), {
    ...S,
    default: false,
    description: "Keep /ping healthy even when a model FAILED (env SERVING_HEALTH_CHECK_OVERRIDE).",
    here: "same",
  }),
] as const;

/** Keys a model reads with the server-wide value as its default (spec §1.2 item 5). */
export const SHARED_KEYS = [
  def("job_queue_size", "jobQueueSize", int({ min: 1 }), {
    ...SH,
    default: 1000,
    description: "Bounded queue of requests per model; a full queue answers throttle_error_http_code.",
    here: "same: requests beyond running + queued get 503",
  }),
  def("batch_size", "batchSize", int({ min: 1 }), {
    ...SH,
    default: 1,
    description: "Dynamic (request-level) batch size; > 1 turns rolling batch off.",
    here: "the handler path's dynamic batching; > 1 with a rolling batch is an error",
  }),
  def("max_batch_delay", "maxBatchDelay", int({ min: 0 }), {
    ...SH,
    default: 100,
    description: "Milliseconds to wait while filling a dynamic batch.",
    here: "same (handler path)",
  }),
  def("max_idle_time", "maxIdleTime", int({ min: 0 }), {
    ...SH,
    default: 60,
    description: "Seconds before an idle worker above minWorkers is stopped.",
    here: "same (handler path workers)",
  }),
  def("load_on_devices", "loadOnDevices", deviceList(), {
    ...SH,
    default: "*",
    description: "Devices a model may load on: * or a ;-separated list (0;1 or gpu0;gpu1).",
    here: "same: restricts the GPUs the executor or Python workers are given",
  }),
  def("retry_threshold", "retryThreshold", int({ min: 0 }), {
    ...SH,
    default: 0,
    description: "Crashes of a model's worker after which the model is FAILED (env SERVING_RETRY_THRESHOLD).",
    here: "same",
  }),
] as const;
