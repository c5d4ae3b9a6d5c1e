// The multipart upload client: a file in parts (S3's protocol, both modes), four parts in flight, each
// retried with back-off, resumable after a reload or a lost connection (the upload id is kept in this
// browser under a fingerprint of the file, so picking the same file again sends only the missing parts).
import { api, ApiError, errorSentence } from "./common.js";

export const MULTIPART_FROM = 8 * 1024 * 1024; // files larger than one part go in parts
const IN_FLIGHT = 4;
const ATTEMPTS = 8; // per part: then the upload stops with a sentence (and can be resumed)
const BACKOFF_MS = [1000, 2000, 4000, 8000, 15000, 30000];
const URL_BATCH = 16; // part URLs asked for at a time
const URL_FRESH_MS = 10 * 60 * 1000; // a URL older than this is asked for again (credentials may rotate)
const STORE_KEY = "video-converter.uploads";

/** What identifies a file across reloads without reading it: name, size, type and modification time. */
export function fingerprint(file) {
  return [file.name, file.size, file.type, file.lastModified].join("|");
}

function loadSaved() {
  try {
    const saved = JSON.parse(localStorage.getItem(STORE_KEY) || "{}");
    return saved && typeof saved === "object" && !Array.isArray(saved) ? saved : {};
  } catch {
    return {};
  }
}

function storeSaved(saved) {
  try {
    localStorage.setItem(STORE_KEY, JSON.stringify(saved));
  } catch {
    /* storage full or disabled: this upload just cannot be resumed after a reload */
  }
}

/** The unfinished upload this browser began for this file, if it has not expired. */
export function savedUpload(file) {
  const entry = loadSaved()[fingerprint(file)];
  if (!entry || typeof entry.upload_id !== "string") return null;
  if (Date.parse(entry.expires_at) <= Date.now()) {
    forgetUpload(file);
    return null;
  }
  return entry;
}

function rememberUpload(file, ticket) {
  const saved = loadSaved();
  for (const [key, entry] of Object.entries(saved)) {
    if (!entry || Date.parse(entry.expires_at) <= Date.now()) delete saved[key]; // tidy expired ones
  }
  saved[fingerprint(file)] = { upload_id: ticket.upload_id, expires_at: ticket.expires_at, received: 0 };
  storeSaved(saved);
}

function noteProgress(file, received) {
  const saved = loadSaved();
  const entry = saved[fingerprint(file)];
  if (!entry) return;
  entry.received = received;
  storeSaved(saved);
}

export function forgetUpload(file) {
  const saved = loadSaved();
  delete saved[fingerprint(file)];
  storeSaved(saved);
}

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });

/** A failure worth another attempt: the network, a timeout, the server busy or an expired part URL. */
function retryable(status) {
  return status === 0 || status === 403 || status === 408 || status === 429 || status >= 500;
}

export class MultipartUpload {
  /** ``onProgress(sentBytes, totalBytes)`` as bytes arrive; ``onResume(receivedBytes)`` when resuming. */
  constructor(file, { onProgress = () => {}, onResume = () => {} } = {}) {
    this.file = file;
    this.onProgress = onProgress;
    this.onResume = onResume;
    this.controller = new AbortController();
    this.requests = new Set();
    this.inFlight = new Map(); // part number -> bytes sent of it so far
    this.done = 0; // bytes of the parts received
    this.etags = new Map();
    this.urls = new Map(); // part number -> {url, size, at}
  }

  get aborted() {
    return this.controller.signal.aborted;
  }

  /** Stopped: cancelled, or a part failed for good (then the others stop too; the upload can resume). */
  get stopping() {
    return this.aborted || Boolean(this.failed);
  }

  /** Upload the file (or the rest of it); resolve with the upload id once the original is complete. */
  async run() {
    const ticket = await this.begin();
    this.ticket = ticket;
    const missing = [];
    for (let n = 1; n <= ticket.parts; n += 1) if (!this.etags.has(n)) missing.push(n);
    this.report();
    const queue = [...missing];
    const workers = Array.from({ length: Math.min(IN_FLIGHT, queue.length) }, () => this.work(queue));
    await Promise.all(workers);
    if (this.aborted) throw new ApiError("Upload cancelled.", -1);
    if (this.failed) throw this.failed;
    const parts = [...this.etags.entries()].sort((a, b) => a[0] - b[0]).map(([number, etag]) => ({ number, etag }));
    const done = await api(`/api/uploads/${ticket.upload_id}/complete`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ parts }),
    });
    forgetUpload(this.file);
    return done.upload_id;
  }

  /** Resume the upload this browser began for the file, or begin a new one. */
  async begin() {
    const saved = savedUpload(this.file);
    if (saved) {
      try {
        const view = await api(`/api/uploads/${encodeURIComponent(saved.upload_id)}`);
        if (view.size === this.file.size && view.state === "uploading") {
          for (const part of view.received) {
            this.etags.set(part.number, part.etag);
            this.done += part.size;
          }
          this.onResume(this.done);
          return view;
        }
      } catch (error) {
        if (!(error instanceof ApiError) || ![404, 409].includes(error.status)) throw error;
      }
      forgetUpload(this.file); // gone, expired or already complete: start again
    }
    const ticket = await api("/api/uploads", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ filename: this.file.name, size: this.file.size, content_type: this.file.type || null }),
    });
    rememberUpload(this.file, ticket);
    return ticket;
  }

  async work(queue) {
    while (queue.length && !this.stopping) {
      const number = queue.shift();
      try {
        await this.sendPart(number, queue);
      } catch (error) {
        this.failed = this.failed || error;
        for (const xhr of this.requests) xhr.abort();
      }
    }
  }

  /** One part, tried until it arrives (with back-off between attempts) or the attempts run out. */
  async sendPart(number, queue) {
    for (let attempt = 1; ; attempt += 1) {
      let target;
      try {
        target = await this.urlFor(number, queue);
        const etag = await this.put(number, target);
        this.etags.set(number, etag);
        this.inFlight.delete(number);
        this.done += target.size;
        noteProgress(this.file, this.done);
        this.report();
        return;
      } catch (error) {
        this.inFlight.delete(number);
        this.report();
        if (this.stopping) return;
        const status = error instanceof ApiError ? error.status : 0;
        if (!retryable(status) || attempt >= ATTEMPTS) throw error;
        this.urls.delete(number); // a fresh URL next time (it may have expired)
        await sleep(BACKOFF_MS[Math.min(attempt - 1, BACKOFF_MS.length - 1)], this.controller.signal);
      }
    }
  }

  /** A signed URL for the part, asked for with the next few parts' in one request. */
  async urlFor(number, queue) {
    const known = this.urls.get(number);
    if (known && Date.now() - known.at < URL_FRESH_MS) return known;
    const numbers = [number, ...queue.filter((n) => !this.urls.has(n)).slice(0, URL_BATCH - 1)];
    const answer = await api(`/api/uploads/${this.ticket.upload_id}/parts`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ numbers }),
      signal: this.controller.signal,
    });
    const at = Date.now();
    for (const part of answer.parts) this.urls.set(part.number, { url: part.url, size: part.size, at });
    return this.urls.get(number);
  }

  put(number, target) {
    const start = (number - 1) * this.ticket.part_size;
    const blob = this.file.slice(start, start + target.size);
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      this.requests.add(xhr);
      const finish = () => this.requests.delete(xhr);
      xhr.open("PUT", target.url);
      xhr.upload.onprogress = (event) => {
        this.inFlight.set(number, event.loaded);
        this.report();
      };
      xhr.onload = () => {
        finish();
        const etag = xhr.getResponseHeader("ETag");
        if (xhr.status >= 200 && xhr.status < 300 && etag) resolve(etag);
        else {
          const type = xhr.getResponseHeader("content-type") || "";
          const status = xhr.status >= 200 && xhr.status < 300 ? 502 : xhr.status; // no ETag: CORS or a proxy
          reject(new ApiError(errorSentence(status, xhr.responseText, type), status));
        }
      };
      xhr.onerror = () => {
        finish();
        reject(new ApiError("The connection was lost while sending a part.", 0));
      };
      xhr.ontimeout = xhr.onerror;
      xhr.onabort = () => {
        finish();
        reject(new ApiError("Upload cancelled.", -1));
      };
      xhr.send(blob);
    });
  }

  report() {
    let sent = this.done;
    for (const bytes of this.inFlight.values()) sent += bytes;
    this.onProgress(Math.min(sent, this.file.size), this.file.size);
  }

  /** Cancel: stop every request and drop the upload on the server (and its record here). */
  async abort() {
    if (this.aborted) return;
    this.controller.abort();
    for (const xhr of this.requests) xhr.abort();
    forgetUpload(this.file);
    if (this.ticket) {
      await api(`/api/uploads/${this.ticket.upload_id}`, { method: "DELETE" }).catch(() => {});
    }
  }
}
