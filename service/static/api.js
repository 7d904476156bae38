// Calls to the JSON API with the key (fetch, or XMLHttpRequest for an upload's progress), and what a refused
// or failed call is said to be: the API's error in words, a quota's refusal in a page user's.

import { el, sizeText } from "./dom.js";
import { state } from "./state.js";

export class ApiError extends Error {
  constructor(status, error, retryAfter = null) {
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.error = error;
    this.retryAfter = retryAfter; // seconds, a 429's Retry-After
  }
}

// GET unless a method is given; { json } posts it as JSON, { body } as it is (a FormData: multipart).
// `timeoutMs`: give up on an answer that has not come by then (the lists' refresh: a request that hangs
// would otherwise keep every later refresh waiting behind it, and the page would stop changing).
export async function api(path, { method, json, body, timeoutMs } = {}) {
  const headers = { Authorization: `Bearer ${state.key}` };
  if (json !== undefined) headers["Content-Type"] = "application/json";
  const post = json !== undefined || body !== undefined;
  const response = await fetch(path, {
    method: method || (post ? "POST" : "GET"),
    headers,
    body: json !== undefined ? JSON.stringify(json) : body,
    cache: "no-store",
    credentials: "omit",
    signal: timeoutMs ? AbortSignal.timeout(timeoutMs) : undefined,
  });
  if (!response.ok) {
    const text = await response.text().catch(() => "");
    throw answerError(response.status, response.statusText, text, response.headers.get("Retry-After"));
  }
  return response;
}

// A refused request's ApiError: the API's error object from the answer's JSON, else (a proxy's page, or no
// body) the status.
function answerError(status, statusText, text, retryAfter) {
  let error = null;
  try {
    error = JSON.parse(text).error;
  } catch (_) {
    // not the API's error shape: the status says it
  }
  return new ApiError(status, error || { code: `http_${status}`, message: statusText }, retryAfter);
}

// POST `body` as api() would, saying how much of it is sent: fetch() cannot tell, and an upload of a few GB
// is minutes of sending. The answer as api()'s: its status and JSON, or an ApiError.
export function sendWithProgress(path, body, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    xhr.setRequestHeader("Authorization", `Bearer ${state.key}`);
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) onProgress(event.loaded, event.total);
    };
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        try {
          resolve({ status: xhr.status, json: JSON.parse(xhr.responseText) });
        } catch (err) {
          reject(err); // not the API's JSON (a proxy's page): the form says so, not a promise left hanging
        }
      } else {
        const retryAfter = xhr.getResponseHeader("Retry-After");
        reject(answerError(xhr.status, xhr.statusText, xhr.responseText, retryAfter));
      }
    };
    // as fetch() fails: the connection ended without an answer
    xhr.onerror = () => reject(new TypeError("the connection ended without an answer"));
    xhr.send(body);
  });
}

export function describe(err) {
  if (err instanceof ApiError) {
    const field = err.error.field ? ` [${err.error.field}]` : "";
    return `HTTP ${err.status} ${err.error.code}${field}: ${err.error.message}`;
  }
  return `the server cannot be reached (${err.message})`;
}

// An API error with its details ("utterances.csv.label: ..." for each bad field of an upload), the first few.
function explain(err) {
  if (!(err instanceof ApiError) && !(err instanceof TypeError)) return err.message; // the form's own check
  const details = (err instanceof ApiError && err.error.details) || [];
  if (details.length < 2) return describe(err);
  // the message lists the problems too, the first on its first line: each is said once, from the details
  const head = describe(err).split("\n")[0].replace(details[0].problem, "").replace(/:\s*$/, "");
  // a problem that names its file already ("utterances.csv: column 'label': ...") is not prefixed again
  const said = (d) => (d.field.startsWith(d.problem.split(":")[0]) ? d.problem : `${d.field}: ${d.problem}`);
  const listed = details.slice(0, 5).map(said);
  const more = details.length > 5 ? ` (and ${details.length - 5} more)` : "";
  return `${head} — ${listed.join("; ")}${more}`;
}

// A quota's refusal (413 or 429 naming quota.NAME) in a page user's words: which limit, and when to try
// again or what to do. The API's message names the server's QUOTA_ setting and unilabel-remote's commands,
// meant for the command line; it stays a click away (refusal()).
const many = (n, what) => `${n.toLocaleString()} ${what}${n === 1 ? "" : "s"}`;
const QUOTA_WORDS = {
  stored_bytes: (n) => `storage limit of ${sizeText(n)}`,
  uploads_per_minute: (n) => `limit of ${many(n, "upload")} a minute`,
  queued_jobs: (n) => `limit of ${many(n, "queued job")}`,
  concurrent_jobs: (n) => `limit of ${many(n, "job")} queued or running at once`,
  predictions_per_minute: (n) => `limit of ${many(n, "prediction")} a minute`,
};

function quotaText(err) {
  if (!(err instanceof ApiError) || ![413, 429].includes(err.status)) return null;
  const field = err.error.field || "";
  const name = field.startsWith("quota.") ? field.slice("quota.".length) : null;
  const use = name && state.usage && state.usage[name];
  if (!use || !use.limit || !QUOTA_WORDS[name]) return null;
  const limit = `this key's ${QUOTA_WORDS[name](use.limit)}`;
  if (err.status === 429) {
    const seconds = Number(err.retryAfter);
    const at = new Date(Date.now() + seconds * 1000).toLocaleTimeString();
    const when = seconds > 0 ? `try again in ${seconds} s (at ${at})` : "try again later";
    const or = name.endsWith("_jobs") ? ", or cancel a queued job" : "";
    return `Refused: ${limit} is reached; ${when}${or}.`;
  }
  if (name !== "stored_bytes") return null; // a request larger than a per-minute quota: the page sends none
  return `Refused: the upload does not fit under ${limit} (${sizeText(use.used)} stored at the last ` +
    "refresh); delete datasets or models below to make room.";
}

// What a form says of its refused request: a quota's refusal in short, the API's whole message in a
// <details>; else that message (explain()).
export function refusal(err) {
  const said = quotaText(err);
  if (!said) return [explain(err)];
  const whole = el("details", { className: "api-message" }, el("summary", {}, "the service's message"),
    el("div", {}, explain(err)));
  return [said, " ", whole];
}
