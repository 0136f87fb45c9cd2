// The API as the console uses it: the key from sessionStorage on every call, errors as ApiError.
import { SseParser } from "./sse.js";

const KEY = "ingest.apiKey";

export const session = {
  get key() {
    return sessionStorage.getItem(KEY);
  },
  set key(value) {
    if (value) sessionStorage.setItem(KEY, value);
    else sessionStorage.removeItem(KEY);
  },
  admin: false,
};

export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

function headers(extra = {}) {
  return { Authorization: `Bearer ${session.key}`, ...extra };
}

async function failure(response) {
  let code = `http_${response.status}`;
  let message = response.statusText || "the request failed";
  try {
    const body = await response.json();
    if (body && body.error) ({ code, message } = body.error);
  } catch {
    // not JSON (a proxy's page): keep the status line
  }
  const retry = response.headers.get("Retry-After");
  return new ApiError(response.status, code, message, retry ? Number(retry) : null);
}

async function send(method, path, init = {}) {
  let response;
  try {
    response = await fetch(path, { method, ...init, headers: headers(init.headers) });
  } catch (err) {
    throw new ApiError(0, "network", String(err.message || err), null);
  }
  if (!response.ok) throw await failure(response);
  return response;
}

export async function call(method, path, body) {
  const init = body === undefined ? {} : {
    body: JSON.stringify(body),
    headers: { "Content-Type": "application/json" },
  };
  const response = await send(method, path, init);
  return response.status === 204 ? null : response.json();
}

export async function upload(file) {
  const form = new FormData();
  form.append("file", file, file.name);
  const response = await send("POST", "/v1/documents", { body: form });
  return response.json();
}

/** Calls onJob(job) for each `job` event of the job's stream until it ends; resolves with the last job. */
export async function followJob(jobId, onJob) {
  const response = await send("GET", `/v1/jobs/${encodeURIComponent(jobId)}/events`, {
    headers: { Accept: "text/event-stream" },
  });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const parser = new SseParser();
  let last = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    for (const event of parser.push(decoder.decode(value, { stream: true }))) {
      const data = JSON.parse(event.data);
      if (event.event === "error") throw new ApiError(404, data.error.code, data.error.message, null);
      if (event.event === "job") {
        last = data;
        onJob(data);
      }
    }
  }
  return last;
}
