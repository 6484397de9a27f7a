// Calls to the API. Paths are relative to the page (/api/console), so "destinations" is /api/destinations, also
// behind a gateway that adds a prefix of its own. The administration key is kept in this tab's sessionStorage
// (gone when the tab closes, never in localStorage) and sent only as the x-functions-key header, never in a URL.

const KEY_ITEM = "blob-export-console.admin-key";
const KEY_HEADER = "x-functions-key";

/** The API refused the call without (or with this) key: the console asks for one. */
export class KeyNeeded extends Error {
  constructor(refused) {
    super(refused ? "that key was refused: check it is the admin function's key" : "the API asks for a key");
    this.refused = refused;
  }
}

/** The API answered an error: its status, stable code and message in words (plain text, never HTML). */
export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || [];
  }

  /** The message with each detail's field and words, as one line. */
  get words() {
    const details = this.details
      .filter((detail) => detail && typeof detail === "object" && detail.message)
      .map((detail) => (detail.field ? `${detail.field}: ${detail.message}` : String(detail.message)));
    return [this.message, ...details].join("; ");
  }
}

export function savedKey() {
  return sessionStorage.getItem(KEY_ITEM);
}

export function saveKey(key) {
  sessionStorage.setItem(KEY_ITEM, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_ITEM);
}

/** The path with its query: query values are encoded, empty ones left out. */
export function pathWith(path, query = {}) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value !== null && value !== undefined && value !== "") params.set(name, String(value));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

/** One segment of a path, whatever it holds (an id typed by someone, or from a link). */
export function segment(value) {
  return encodeURIComponent(String(value));
}

async function errorFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null; // the host's own errors (a 401, a 502) may carry no JSON
  }
  const error = body && typeof body === "object" ? body.error : null;
  if (error && typeof error === "object" && typeof error.message === "string") {
    return new ApiError(response.status, String(error.code || "error"), error.message, error.details);
  }
  return new ApiError(response.status, "http_error", `the API answered HTTP ${response.status} ${response.statusText}`.trim());
}

/** Call the API: the answer's JSON (null for 204), or ApiError / KeyNeeded. */
export async function call(method, path, body) {
  const key = savedKey();
  const headers = {Accept: "application/json"};
  if (key) headers[KEY_HEADER] = key;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(new URL(path, document.baseURI), {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store", credentials: "same-origin", redirect: "error", referrerPolicy: "no-referrer",
    });
  } catch (error) {
    throw new ApiError(0, "unreachable", `the API could not be reached (${error.message}); check the network and refresh`);
  }
  if (response.status === 401) throw new KeyNeeded(Boolean(key));
  if (!response.ok) throw await errorFrom(response);
  if (response.status === 204) return null;
  return response.json();
}

export const get = (path, query) => call("GET", pathWith(path, query));
export const post = (path, body) => call("POST", path, body);
export const put = (path, body, query) => call("PUT", pathWith(path, query), body);
