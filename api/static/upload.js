// The upload page: pick or drop a file, choose formats, upload with an upload ticket, create the job.
import {
  api,
  ApiError,
  clearRecent,
  el,
  errorSentence,
  forgetJob,
  formatBytes,
  formatTime,
  loadRecent,
  rememberJob,
  STATUS_TEXT,
} from "./common.js";

const form = document.getElementById("upload-form");
const input = document.getElementById("file");
const dropzone = document.getElementById("dropzone");
const summary = document.getElementById("file-summary");
const submit = document.getElementById("submit");
const cancel = document.getElementById("cancel");
const hint = document.getElementById("submit-hint");
const errorBox = document.getElementById("form-error");
const warningBox = document.getElementById("form-warning");
const progressBox = document.getElementById("upload-status");
const progress = document.getElementById("upload-progress");
const progressLabel = document.getElementById("upload-progress-label");
const progressText = document.getElementById("upload-progress-text");
const announcer = document.getElementById("upload-announcer");
const maxBytes = Number(form.dataset.maxBytes) || Infinity;

// Extensions FFmpeg reads that browsers often report with an empty or odd MIME type.
const MEDIA_EXTENSIONS = new Set(
  "mp4 m4v mov qt mkv webm avi wmv flv f4v mpg mpeg mpe m2v ts mts m2ts vob 3gp 3g2 ogv ogg oga opus mp3 m4a aac wav flac wma aiff aif amr mxf dv asf rm rmvb".split(" "),
);

let file = null;
let uploading = null; // the XMLHttpRequest while an upload runs

for (const node of document.querySelectorAll("[data-bytes]")) node.textContent = formatBytes(node.dataset.bytes);

function selectedFormats() {
  return [...form.querySelectorAll('input[name="formats"]:checked')].map((box) => box.value);
}

function showError(message) {
  errorBox.textContent = message || "";
  errorBox.hidden = !message;
}

function showWarning(message) {
  warningBox.textContent = message || "";
  warningBox.hidden = !message;
}

function looksLikeMedia(candidate) {
  const type = (candidate.type || "").toLowerCase();
  if (type.startsWith("video/") || type.startsWith("audio/")) return true;
  const ext = candidate.name.includes(".") ? candidate.name.split(".").pop().toLowerCase() : "";
  if (MEDIA_EXTENSIONS.has(ext)) return true;
  if (!type || type === "application/octet-stream") return null; // unknown: cannot tell
  return false;
}

/** Problems that block submitting, as one sentence (or "" when the form is ready). */
function blockingProblem() {
  if (!file) return "Choose a file to convert.";
  if (file.size === 0) return "This file is empty. Choose another one.";
  if (file.size > maxBytes) {
    return `This file is ${formatBytes(file.size)}, larger than the ${formatBytes(maxBytes)} upload limit.`;
  }
  if (!selectedFormats().length) return "Pick at least one format.";
  return "";
}

function refresh() {
  const problem = blockingProblem();
  submit.disabled = Boolean(problem) || Boolean(uploading);
  const count = selectedFormats().length;
  hint.textContent = uploading
    ? "Uploading… keep this page open."
    : problem || `Ready: ${count} format${count === 1 ? "" : "s"}.`;
  hint.classList.toggle("hint--ready", !problem && !uploading);
  // A file that is chosen but unusable is an error worth saying out loud, not just a hint.
  if (file && (file.size === 0 || file.size > maxBytes)) showError(problem);
}

function setFile(candidate) {
  showError("");
  showWarning("");
  file = candidate || null;
  summary.replaceChildren();
  summary.hidden = !file;
  dropzone.classList.toggle("dropzone--has-file", Boolean(file));
  if (file) {
    summary.append(
      el("span", { class: "file-summary__name", text: file.name }),
      el("span", { class: "file-summary__meta", text: [formatBytes(file.size), file.type].filter(Boolean).join(" · ") }),
    );
    const media = looksLikeMedia(file);
    if (media === false) {
      showWarning(
        `“${file.name}” does not look like a video or audio file (${file.type}). You can still try; the conversion will fail if FFmpeg cannot read it.`,
      );
    } else if (media === null) {
      showWarning("Your browser could not tell what kind of file this is. It will be checked after the upload.");
    }
  }
  refresh();
}

input.addEventListener("change", () => setFile(input.files && input.files[0]));
form.addEventListener("change", (event) => {
  if (event.target.name === "formats") {
    showError("");
    refresh();
  }
});

// Drag and drop onto the zone (and anywhere on the page, so a near miss does not open the file).
let dragDepth = 0;
function hasFiles(event) {
  return event.dataTransfer && [...event.dataTransfer.types].includes("Files");
}
window.addEventListener("dragover", (event) => {
  if (hasFiles(event)) event.preventDefault();
});
window.addEventListener("drop", (event) => {
  if (hasFiles(event)) event.preventDefault();
});
dropzone.addEventListener("dragenter", (event) => {
  if (!hasFiles(event) || uploading) return;
  dragDepth += 1;
  dropzone.classList.add("dropzone--over");
});
dropzone.addEventListener("dragleave", () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (!dragDepth) dropzone.classList.remove("dropzone--over");
});
dropzone.addEventListener("dragover", (event) => {
  if (!hasFiles(event)) return;
  event.preventDefault();
  event.dataTransfer.dropEffect = uploading ? "none" : "copy";
});
dropzone.addEventListener("drop", (event) => {
  if (!hasFiles(event)) return;
  event.preventDefault();
  dragDepth = 0;
  dropzone.classList.remove("dropzone--over");
  if (uploading) return;
  const files = event.dataTransfer.files;
  if (files.length > 1) showWarning("Only one file at a time: using the first one.");
  if (!files.length) return;
  try {
    input.files = files; // keep the real input in step where the browser allows it
  } catch {
    /* older browsers: the dropped file is kept in our own variable */
  }
  const warning = warningBox.textContent;
  setFile(files[0]);
  if (files.length > 1 && !warningBox.textContent) showWarning(warning);
});

function setBusy(busy) {
  form.classList.toggle("is-busy", busy);
  input.disabled = busy;
  for (const box of form.querySelectorAll('input[name="formats"]')) box.disabled = busy;
  cancel.hidden = !busy;
  progressBox.hidden = !busy && progress.value === 0;
  refresh();
}

let announced = -1; // the last quarter of the upload read out to screen readers

function setProgress(loaded, total) {
  const percent = total ? Math.min(100, Math.floor((loaded / total) * 100)) : 0;
  const quarter = Math.floor(percent / 25);
  if (quarter !== announced && percent < 100) {
    announced = quarter;
    announcer.textContent = percent ? `Uploaded ${percent}%.` : "Upload started.";
  }
  progress.value = percent;
  progress.textContent = `${percent}%`;
  progressText.textContent = total ? `${percent}% · ${formatBytes(loaded)} of ${formatBytes(total)}` : `${percent}%`;
}

/** POST the file like a browser form to an S3 presigned POST (or the local stand-in), with progress. */
function sendFile(ticket, chosen) {
  return new Promise((resolve, reject) => {
    const data = new FormData();
    for (const [name, value] of Object.entries(ticket.fields || {})) data.append(name, value);
    data.append("file", chosen, chosen.name);
    const xhr = new XMLHttpRequest();
    uploading = xhr;
    xhr.open("POST", ticket.url);
    xhr.upload.onprogress = (event) => setProgress(event.loaded, event.lengthComputable ? event.total : chosen.size);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve();
      else {
        const type = xhr.getResponseHeader("content-type") || "";
        reject(new ApiError(errorSentence(xhr.status, xhr.responseText, type), xhr.status));
      }
    };
    xhr.onerror = () => reject(new ApiError("The upload was interrupted. Check your connection and try again.", 0));
    xhr.onabort = () => reject(new ApiError("Upload cancelled.", -1));
    xhr.send(data);
  });
}

function warnBeforeLeaving(event) {
  event.preventDefault();
  event.returnValue = "";
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (uploading) return;
  const problem = blockingProblem();
  if (problem) {
    showError(problem);
    (file ? form.querySelector('input[name="formats"]') : input).focus();
    return;
  }
  const chosen = file;
  const formats = selectedFormats();
  showError("");
  uploading = true;
  progressLabel.textContent = `Uploading ${chosen.name}`;
  announced = -1;
  setProgress(0, chosen.size);
  setBusy(true);
  window.addEventListener("beforeunload", warnBeforeLeaving);
  try {
    const ticket = await api("/api/uploads", { method: "POST" });
    if (ticket.max_bytes && chosen.size > ticket.max_bytes) {
      throw new ApiError(`The file is larger than the ${formatBytes(ticket.max_bytes)} upload limit.`, 413);
    }
    await sendFile(ticket, chosen);
    setProgress(chosen.size, chosen.size);
    progressText.textContent = "100% · Upload complete. Starting the conversion…";
    announcer.textContent = "Upload complete. Starting the conversion.";
    uploading = true; // the XHR is done; still busy until the job exists
    cancel.hidden = true;
    const job = await api("/api/jobs", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ upload_id: ticket.upload_id, filename: chosen.name, formats }),
    });
    rememberJob({ id: job.job_id, filename: job.filename, created: job.created_at });
    window.removeEventListener("beforeunload", warnBeforeLeaving);
    window.location.assign(`/jobs/${encodeURIComponent(job.job_id)}`);
  } catch (error) {
    window.removeEventListener("beforeunload", warnBeforeLeaving);
    uploading = null;
    progress.value = 0;
    setBusy(false);
    progressBox.hidden = true;
    if (error instanceof ApiError && error.status === -1) showWarning("Upload cancelled. Nothing was sent for conversion.");
    else showError(error instanceof ApiError ? error.message : "Something went wrong. Please try again.");
    submit.focus();
  }
});

cancel.addEventListener("click", () => {
  if (uploading instanceof XMLHttpRequest) uploading.abort();
});

// Restore state after a back navigation (the browser may keep the chosen file and ticks).
window.addEventListener("pageshow", (event) => {
  if (event.persisted) {
    uploading = null;
    progress.value = 0;
    setBusy(false);
  }
  setFile(input.files && input.files[0]);
  renderRecent();
});

// ---- recent jobs ----

const recentSection = document.getElementById("recent");
const recentList = document.getElementById("recent-list");
const recentClear = document.getElementById("recent-clear");

function setRowStatus(row, status, title) {
  const badge = row.querySelector(".badge");
  badge.dataset.status = status;
  badge.textContent = STATUS_TEXT[status] || status;
  row.dataset.status = status;
  if (title) badge.title = title;
}

async function fetchStatus(row) {
  if (row.dataset.fetched) return;
  row.dataset.fetched = "1";
  try {
    const job = await api(`/api/jobs/${encodeURIComponent(row.dataset.jobId)}`);
    setRowStatus(row, job.status);
    const done = job.outputs.filter((out) => out.status === "completed").length;
    const meta = row.querySelector(".recent__meta");
    meta.textContent = [meta.dataset.when, `${done} of ${job.outputs.length} ready`].filter(Boolean).join(" · ");
  } catch (error) {
    if (error.status === 404) setRowStatus(row, "missing", "This job no longer exists on the server.");
    else {
      setRowStatus(row, "unknown", error.message);
      delete row.dataset.fetched; // try again next time it scrolls into view
    }
  }
}

const observer =
  "IntersectionObserver" in window
    ? new IntersectionObserver((entries) => {
        for (const entry of entries) {
          if (entry.isIntersecting) {
            observer.unobserve(entry.target);
            fetchStatus(entry.target);
          }
        }
      }, { rootMargin: "200px 0px" })
    : null;

function renderRecent() {
  const items = loadRecent();
  recentSection.hidden = !items.length;
  recentList.replaceChildren();
  for (const item of items) {
    const when = formatTime(item.created);
    const row = el(
      "li",
      { class: "recent__item", dataset: { jobId: item.id, testid: "recent-job" } },
      el(
        "div",
        { class: "recent__main" },
        el("a", { href: `/jobs/${encodeURIComponent(item.id)}`, class: "recent__link", text: item.filename || item.id }),
        el("span", { class: "recent__meta muted small", dataset: { when }, text: when }),
      ),
      el("span", { class: "badge", dataset: { status: "loading" }, text: STATUS_TEXT.loading }),
      el(
        "button",
        { type: "button", class: "icon-button", "aria-label": `Remove ${item.filename || "job"} from this list`, title: "Remove" },
        "×",
      ),
    );
    row.querySelector("button").addEventListener("click", () => {
      const next = row.nextElementSibling || row.previousElementSibling;
      forgetJob(item.id);
      row.remove();
      if (!recentList.children.length) {
        recentSection.hidden = true;
        input.focus();
      } else (next.querySelector("button") || next).focus();
    });
    recentList.append(row);
    if (observer) observer.observe(row);
    else fetchStatus(row);
  }
}

recentClear.addEventListener("click", () => {
  clearRecent();
  renderRecent();
  input.focus();
});

refresh();
