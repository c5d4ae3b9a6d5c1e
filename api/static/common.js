// Shared helpers for the upload and job pages. Everything inserted into the page goes through
// textContent / attributes (never innerHTML), so file names and server messages are always inert text.

/** Create an element: el("a", {href: "/", class: "x", dataset: {k: "v"}}, "text", childNode). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "text") node.textContent = value;
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined || Number.isNaN(Number(bytes))) return "";
  // Binary multiples, like the server's messages (its "4.0 GiB" limit reads as "4.0 GB" here).
  let value = Number(bytes);
  const units = ["bytes", "KB", "MB", "GB", "TB"];
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  if (unit === 0) return `${value} ${value === 1 ? "byte" : "bytes"}`;
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(Number(seconds))) return "";
  const total = Math.max(0, Number(seconds));
  if (total < 10) return `${total.toFixed(1)} s`;
  const whole = Math.round(total);
  const h = Math.floor(whole / 3600);
  const m = Math.floor((whole % 3600) / 60);
  const s = String(whole % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

export function formatTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const sameDay = date.toDateString() === new Date().toDateString();
  return sameDay
    ? date.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" })
    : date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export const STATUS_TEXT = {
  loading: "Loading",
  queued: "Queued",
  processing: "Converting",
  completed: "Completed",
  failed: "Failed",
  partial: "Partly done",
  missing: "Not found",
  unknown: "Unknown",
};

export const FINISHED = new Set(["completed", "failed", "partial"]);

export const JOB_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** An error carrying the HTTP status (0 for network failures) and the server's sentence. */
export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

/** The human sentence in an error response: JSON {detail}, S3 XML <Message>, or a generic fallback. */
export function errorSentence(status, body, contentType = "") {
  if (body) {
    if (contentType.includes("json") || body.trimStart().startsWith("{")) {
      try {
        const detail = JSON.parse(body).detail;
        if (typeof detail === "string" && detail) return detail;
      } catch {
        /* not JSON after all */
      }
    }
    const xml = /<Message>([^<]*)<\/Message>/.exec(body);
    if (xml && xml[1]) return xml[1];
  }
  if (status === 0) return "Could not reach the server. Check your connection and try again.";
  if (status === 413) return "The file is larger than the upload limit.";
  if (status >= 500) return "Something went wrong on the server. Please try again in a moment.";
  return `The request failed (HTTP ${status}).`;
}

export async function api(path, options = {}) {
  for (;;) {
    let response;
    try {
      response = await fetch(path, {
        cache: "no-store",
        ...options,
        headers: { Accept: "application/json", ...authHeaders(path), ...(options.headers || {}) },
      });
    } catch {
      throw new ApiError(errorSentence(0), 0);
    }
    const text = await response.text().catch(() => "");
    const sentence = errorSentence(response.status, text, response.headers.get("content-type") || "");
    // This server wants a key: ask for one, then send the request again with it.
    if (response.status === 401 && isApi(path)) {
      const refused = apiKey();
      if (refused) setApiKey(""); // mistyped or revoked: forget it
      await signIn(refused ? sentence : "");
      continue;
    }
    return answer(response, text, sentence);
  }
}

function answer(response, text, sentence) {
  if (!response.ok) throw new ApiError(sentence, response.status);
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    throw new ApiError("The server sent an unreadable answer.", response.status);
  }
}

// ---- sign-in (AUTH=keys): the key lives in this tab's sessionStorage only, goes out as a Bearer
// header to this site's /api (never to storage, never in a URL), and is gone when the tab closes.

const KEY_ITEM = "video-converter.api-key";

function isApi(path) {
  return path.startsWith("/api/");
}

export function apiKey() {
  try {
    return sessionStorage.getItem(KEY_ITEM) || "";
  } catch {
    return "";
  }
}

function setApiKey(key) {
  try {
    if (key) sessionStorage.setItem(KEY_ITEM, key);
    else sessionStorage.removeItem(KEY_ITEM);
  } catch {
    /* storage disabled: the key lasts as long as this page */
  }
  showSignOut();
}

/** The key's header for a request to this server's API (none elsewhere, or without a key). */
export function authHeaders(path) {
  const key = apiKey();
  return key && isApi(path) ? { Authorization: `Bearer ${key}` } : {};
}

let pendingSignIn = null;

/** Show the sign-in panel (with ``problem`` if the last key was refused); resolves once a key is entered. */
function signIn(problem) {
  if (!pendingSignIn) {
    pendingSignIn = new Promise((resolve) => {
      const { panel, form, input, error } = signInPanel();
      error.textContent = problem ? `That key was not accepted. ${problem}` : "";
      error.hidden = !problem;
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        const key = input.value.trim();
        if (!key) {
          error.textContent = "Paste your access key first.";
          error.hidden = false;
          input.focus();
          return;
        }
        setApiKey(key);
        panel.remove();
        document.body.classList.remove("signing-in");
        pendingSignIn = null;
        resolve();
      });
      document.body.classList.add("signing-in");
      document.getElementById("main").prepend(panel);
      input.focus();
    });
  }
  return pendingSignIn;
}

function signInPanel() {
  const input = el("input", {
    id: "sign-in-key",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    autocapitalize: "off",
    "aria-describedby": "sign-in-help",
  });
  const error = el("p", { class: "msg msg--error", id: "sign-in-error", role: "alert", hidden: true });
  const form = el(
    "form",
    { class: "sign-in__form", novalidate: true },
    el("label", { for: "sign-in-key", text: "Access key" }),
    input,
    error,
    el("button", { type: "submit", class: "button button--primary", text: "Sign in" }),
  );
  const panel = el(
    "section",
    { class: "panel sign-in", id: "sign-in", "aria-labelledby": "sign-in-title" },
    el("h1", { id: "sign-in-title", text: "Sign in to convert" }),
    el("p", {
      class: "muted",
      id: "sign-in-help",
      text: "This converter is for people with an access key. Paste the key you were given; it stays in this tab only and is forgotten when you close it.",
    }),
    form,
  );
  return { panel, form, input, error };
}

/** A "Sign out" link in the header while a key is in use. */
function showSignOut() {
  const nav = document.querySelector(".site-header nav");
  let link = document.getElementById("sign-out");
  if (!apiKey()) {
    if (link) link.remove();
    return;
  }
  if (link || !nav) return;
  link = el("a", { href: "/", id: "sign-out", text: "Sign out" });
  link.addEventListener("click", () => setApiKey(""));
  nav.append(link);
}

showSignOut();

// ---- recent jobs (this browser only) ----

const RECENT_KEY = "video-converter.recent-jobs";
export const RECENT_LIMIT = 20;

export function loadRecent() {
  try {
    const items = JSON.parse(localStorage.getItem(RECENT_KEY) || "[]");
    if (!Array.isArray(items)) return [];
    return items.filter((item) => item && typeof item.id === "string" && JOB_ID.test(item.id)).slice(0, RECENT_LIMIT);
  } catch {
    return [];
  }
}

function saveRecent(items) {
  try {
    if (items.length) localStorage.setItem(RECENT_KEY, JSON.stringify(items.slice(0, RECENT_LIMIT)));
    else localStorage.removeItem(RECENT_KEY);
  } catch {
    /* storage full or disabled: the list is a convenience only */
  }
}

/** Remember a job (newest first); an existing entry keeps its place but gets fresh details. */
export function rememberJob({ id, filename, created }) {
  const items = loadRecent();
  const existing = items.find((item) => item.id === id);
  if (existing) {
    existing.filename = filename || existing.filename;
    existing.created = created || existing.created;
    saveRecent(items);
    return;
  }
  saveRecent([{ id, filename: String(filename || ""), created: created || new Date().toISOString() }, ...items]);
}

export function forgetJob(id) {
  saveRecent(loadRecent().filter((item) => item.id !== id));
}

export function clearRecent() {
  saveRecent([]);
}
