// The console talks to the service's own JSON API with the session cookie
// (same origin, never a bearer token in script memory).

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.code = problem?.code;
    this.problem = problem;
  }
}

const listeners = new Set();
/** Called with the status when a request answers 401 (signed out) or 403. */
export function onAuthFailure(fn) {
  listeners.add(fn);
}

export async function api(method, path, body, opts = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (opts.fresh) headers["Cache-Control"] = "no-cache";
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    cache: "no-store",
  });
  const type = res.headers.get("content-type") || "";
  const data = res.status === 204 ? null : type.includes("json") ? await res.json().catch(() => null) : await res.text();
  if (!res.ok) {
    if ((res.status === 401 || res.status === 403) && !opts.quiet) listeners.forEach((fn) => fn(res.status));
    throw new ApiError(res.status, typeof data === "object" ? data : null);
  }
  return data;
}

export const get = (path, opts) => api("GET", path, undefined, opts);
export const post = (path, body, opts) => api("POST", path, body, opts);
export const put = (path, body, opts) => api("PUT", path, body, opts);
export const del = (path, opts) => api("DELETE", path, undefined, opts);

/** A query string from an object, leaving out empty values. */
export function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") u.set(k, String(v));
  }
  const s = u.toString();
  return s ? `?${s}` : "";
}

/** True when an error says the endpoint itself does not exist (an older service). */
export function isMissingRoute(e) {
  return e instanceof ApiError && ((e.status === 404 && e.problem?.detail === "no route matches this path") || e.status === 405);
}

/** GET that answers null instead of throwing when the endpoint does not exist. */
export async function getOptional(path, opts) {
  try {
    return await get(path, opts);
  } catch (e) {
    if (isMissingRoute(e)) return null;
    throw e;
  }
}
