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
  RECENT_LIMIT,
  rememberJob,
  STATUS_TEXT,
} from "./common.js";
import { MULTIPART_FROM, MultipartUpload, savedUpload } from "./multipart.js";

const form = document.getElementById("upload-form");
const input = document.getElementById("file");
const dropzone = document.getElementById("dropzone");
const summary = document.getElementById("file-summary");
const submit = document.getElementById("submit");
const cancel = document.getElementById("cancel");
const hint = document.getElementById("submit-hint");
const errorBox = document.getElementById("form-error");
const fileError = document.getElementById("file-error");
const formatsError = document.getElementById("formats-error");
const overlay = document.getElementById("drop-overlay");
const warningBox = document.getElementById("form-warning");
const progressBox = document.getElementById("upload-status");
const progress = document.getElementById("upload-progress");
const progressLabel = document.getElementById("upload-progress-label");
const progressText = document.getElementById("upload-progress-text");
const announcer = document.getElementById("upload-announcer");
const maxBytes = Number(form.dataset.maxBytes) || Infinity;
const SUBMITTED = "video-converter.submitted"; // set when a job was created, so Back shows a clean form

// Extensions FFmpeg reads that browsers often report with an empty or odd MIME type.
const MEDIA_EXTENSIONS = new Set(
  "mp4 m4v mov qt mkv webm avi wmv flv f4v mpg mpeg mpe m2v ts mts m2ts vob 3gp 3g2 ogv ogg oga opus mp3 m4a aac wav flac wma aiff aif amr mxf dv asf rm rmvb".split(" "),
);

// Sound-only files: the browser reads the header of a file with one of these types or extensions, and
// one without a picture gets the video formats turned off (the server refuses them anyway: 422).
const AUDIO_EXTENSIONS = new Set("mp3 m4a aac wav flac oga opus wma aiff aif amr".split(" "));

let file = null;
let uploading = null; // while an upload runs: its XMLHttpRequest or MultipartUpload (both have abort())
let refusal = null; // {file, message}: the server refused this very file (not media): another is needed
let stage = "upload"; // what the request that failed was doing: "upload" (the file) or "create" (the job)

for (const node of document.querySelectorAll("[data-bytes]")) node.textContent = formatBytes(node.dataset.bytes);

function selectedFormats() {
  return [...form.querySelectorAll('input[name="formats"]:checked:not([data-unavailable])')].map((box) => box.value);
}

const ERROR_BOXES = { file: fileError, formats: formatsError, form: errorBox };

/** Show one error next to what caused it: the file, the formats, or the upload itself ("form"). */
function showError(message, where = "form") {
  for (const [name, box] of Object.entries(ERROR_BOXES)) {
    const mine = Boolean(message) && name === where;
    box.textContent = mine ? message : "";
    box.hidden = !mine;
  }
  const box = ERROR_BOXES[where];
  if (message && box) box.scrollIntoView({ block: "nearest" });
}

/** Which part of the form a blocking problem is about. */
function problemField() {
  if (!file || file.size === 0 || file.size > maxBytes || refused()) return "file";
  return "formats";
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

/** The server's refusal of the chosen file, if it refused this very one. */
function refused() {
  return refusal && refusal.file === file ? refusal.message : "";
}

/** Problems that block submitting, as one sentence (or "" when the form is ready). */
function blockingProblem() {
  if (!file) return "Choose a file to convert.";
  if (refused()) return refused();
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
  // A refused file's sentence is in its own box, next to the file: the hint only says what to do.
  const says = refused() ? "Choose another file." : problem;
  hint.textContent = uploading ? "Uploading… keep this page open." : says || `Ready: ${count} format${count === 1 ? "" : "s"}.`;
  hint.classList.toggle("hint--ready", !problem && !uploading);
  // A file that is chosen but unusable is an error worth saying out loud, not just a hint.
  if (file && (file.size === 0 || file.size > maxBytes)) showError(problem, "file");
}

/** The server refused the chosen file itself (not media, too large): one box by the file, no "Ready". */
function refuseFile(message) {
  refusal = { file, message };
  showWarning("");
  showError(message, "file");
  refresh();
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
    const resumable = file.size > MULTIPART_FROM ? savedUpload(file) : null;
    if (resumable) {
      const sent = resumable.received ? ` (${formatBytes(resumable.received)} of ${formatBytes(file.size)} sent)` : "";
      showWarning(`The upload of this file was interrupted${sent}. Convert resumes it: only the rest is sent.`);
    } else if (media === false) {
      showWarning(
        `“${file.name}” does not look like a video or audio file (${file.type}). You can still try; the conversion will fail if FFmpeg cannot read it.`,
      );
    } else if (media === null) {
      showWarning("Your browser could not tell what kind of file this is. It will be checked after the upload.");
    }
  }
  markSizes(file);
  refresh();
}

/**
 * Mark the video formats that would not be larger than the chosen video: a rendition is never upscaled,
 * so "1080p" of a 720p video stays 720p. The size comes from the browser reading the file's header
 * locally (nothing is uploaded for it); when the browser cannot decode the format, nothing is marked.
 */
let sizeProbe = null;
function markSizes(chosen) {
  const boxes = [...document.querySelectorAll(".format[data-size]")];
  for (const box of boxes) {
    box.classList.remove("format--not-larger");
    box.querySelector(".format__size-note").hidden = true;
  }
  markSoundOnly(false);
  if (sizeProbe) {
    URL.revokeObjectURL(sizeProbe.src);
    sizeProbe = null;
  }
  if (chosen && isAudioFile(chosen)) return probeSoundOnly(chosen);
  if (!chosen || !(chosen.type || "").startsWith("video/")) return;
  readHeader(chosen, (probe) => {
    const short = Math.min(probe.videoWidth, probe.videoHeight);
    if (short <= 0) return;
    for (const box of boxes) {
      if (Number(box.dataset.size) <= short) continue;
      box.classList.add("format--not-larger");
      const note = box.querySelector(".format__size-note");
      note.textContent = `Kept at ${short}p: your video is ${short}p (never upscaled).`;
      note.hidden = false;
    }
  });
}

/**
 * Read the chosen file's header in the browser (a media element, metadata only: nothing is uploaded)
 * and hand the element to ``seen`` once it is known, unless another file was chosen meanwhile. When
 * the browser cannot read the format, nothing happens: the server will say.
 */
function readHeader(chosen, seen) {
  const probe = document.createElement("video");
  probe.preload = "metadata";
  probe.muted = true;
  sizeProbe = probe;
  const done = () => {
    URL.revokeObjectURL(probe.src);
    if (sizeProbe === probe) sizeProbe = null;
  };
  probe.addEventListener("loadedmetadata", () => {
    if (sizeProbe === probe && file === chosen) seen(probe);
    done();
  });
  probe.addEventListener("error", done);
  probe.src = URL.createObjectURL(chosen);
}

function isAudioFile(candidate) {
  const ext = candidate.name.includes(".") ? candidate.name.split(".").pop().toLowerCase() : "";
  return (candidate.type || "").toLowerCase().startsWith("audio/") || AUDIO_EXTENSIONS.has(ext);
}

/** A sound file whose header shows no picture: turn the video formats off. */
function probeSoundOnly(chosen) {
  readHeader(chosen, (probe) => {
    if (!probe.videoWidth && !probe.videoHeight) markSoundOnly(true);
  });
}

let untickedForSound = []; // video formats this form unticked for a sound-only file, ticked again after

/** Turn the formats that need a picture off (sound-only file) or back on, saying why beside each. */
function markSoundOnly(soundOnly) {
  const boxes = [...form.querySelectorAll('.format:not([data-kind="audio"]) input[name="formats"]')];
  for (const box of boxes) {
    const label = box.closest(".format");
    const note = label.querySelector(".format__size-note");
    if (soundOnly) {
      if (box.checked) untickedForSound.push(box);
      box.checked = false;
      box.disabled = true;
      box.dataset.unavailable = "";
      label.classList.add("format--unavailable");
      note.textContent = "This file has sound only: there is no picture to convert.";
      note.hidden = false;
    } else if ("unavailable" in box.dataset) {
      delete box.dataset.unavailable;
      box.disabled = Boolean(uploading);
      label.classList.remove("format--unavailable");
      note.hidden = true;
    }
  }
  if (soundOnly) {
    const sound = form.querySelector('.format[data-kind="audio"] input[name="formats"]');
    if (sound && !selectedFormats().length) sound.checked = true;
    showWarning(`“${file.name}” has sound only, so the video formats are turned off${sound ? ": MP3 is what can be made of it" : ""}.`);
  } else {
    for (const box of untickedForSound) box.checked = true;
    untickedForSound = [];
  }
  refresh();
}

input.addEventListener("change", () => setFile(input.files && input.files[0]));
form.addEventListener("change", (event) => {
  if (event.target.name === "formats") {
    if (!formatsError.hidden) showError("");
    refresh();
  }
});

// Drag and drop anywhere in the window: an overlay shows the whole window is the target.
let dragDepth = 0;
function hasFiles(event) {
  return event.dataTransfer && [...event.dataTransfer.types].includes("Files");
}
function showOverlay(show) {
  overlay.hidden = !show;
  dropzone.classList.toggle("dropzone--over", show);
}
window.addEventListener("dragenter", (event) => {
  if (!hasFiles(event) || uploading) return;
  dragDepth += 1;
  showOverlay(true);
});
window.addEventListener("dragleave", () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (!dragDepth) showOverlay(false);
});
window.addEventListener("dragover", (event) => {
  if (!hasFiles(event)) return;
  event.preventDefault(); // a drop anywhere is ours, never the browser opening the file
  event.dataTransfer.dropEffect = uploading ? "none" : "copy";
});
window.addEventListener("drop", (event) => {
  if (!hasFiles(event)) return;
  event.preventDefault();
  dragDepth = 0;
  showOverlay(false);
  if (uploading) return;
  const files = event.dataTransfer.files;
  if (!files.length) return;
  try {
    input.files = files; // keep the real input in step where the browser allows it
  } catch {
    /* older browsers: the dropped file is kept in our own variable */
  }
  setFile(files[0]);
  if (files.length > 1) showWarning("Only one file at a time: using the first one.");
  input.focus();
});

function setBusy(busy) {
  form.classList.toggle("is-busy", busy);
  input.disabled = busy;
  for (const box of form.querySelectorAll('input[name="formats"]')) box.disabled = busy || "unavailable" in box.dataset;
  cancel.hidden = !busy;
  progressBox.hidden = !busy && progress.value === 0;
  refresh();
}

let announced = -1; // the last quarter of the upload read out to screen readers
let samples = []; // [time ms, bytes] over the last few seconds, for the speed and the time left

function formatSeconds(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "";
  if (seconds < 60) return `${Math.max(1, Math.round(seconds))} s`;
  const minutes = Math.round(seconds / 60);
  return minutes < 60 ? `${minutes} min` : `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

/** "4.2 MB/s · about 12 s left", from the bytes sent over the last 5 seconds ("" until it can tell). */
function rate(loaded, total) {
  const now = performance.now();
  samples.push([now, loaded]);
  while (samples.length > 2 && now - samples[0][0] > 5000) samples.shift();
  const [t0, b0] = samples[0];
  const seconds = (now - t0) / 1000;
  if (seconds < 0.5 || loaded <= b0) return "";
  const speed = (loaded - b0) / seconds;
  const left = total > loaded ? ` · about ${formatSeconds((total - loaded) / speed)} left` : "";
  return ` · ${formatBytes(speed)}/s${left}`;
}

function setProgress(loaded, total) {
  const percent = total ? Math.min(100, Math.floor((loaded / total) * 100)) : 0;
  const quarter = Math.floor(percent / 25);
  if (quarter !== announced && percent < 100) {
    announced = quarter;
    announcer.textContent = percent ? `Uploaded ${percent}%.` : "Upload started.";
  }
  progress.value = percent;
  progress.textContent = `${percent}%`;
  const detail = total ? ` · ${formatBytes(loaded)} of ${formatBytes(total)}${rate(loaded, total)}` : "";
  progressText.textContent = `${percent}%${detail}`;
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

/** A file of one part: one request, with an upload ticket. */
async function sendWhole(chosen) {
  const ticket = await api("/api/uploads", { method: "POST" });
  if (ticket.max_bytes && chosen.size > ticket.max_bytes) {
    throw new ApiError(`The file is larger than the ${formatBytes(ticket.max_bytes)} upload limit.`, 413);
  }
  await sendFile(ticket, chosen);
  return ticket.upload_id;
}

/** A larger file: in parts, four at a time, resumed where an earlier attempt in this browser stopped. */
async function sendParts(chosen) {
  const transfer = new MultipartUpload(chosen, {
    onProgress: setProgress,
    onResume: (received) => {
      samples = [];
      if (received) announcer.textContent = `Resuming: ${formatBytes(received)} were sent before.`;
    },
  });
  uploading = transfer;
  return transfer.run();
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
    const where = problemField();
    showError(problem, where);
    (where === "file" ? input : form.querySelector('input[name="formats"]')).focus();
    return;
  }
  const chosen = file;
  const formats = selectedFormats();
  showError("");
  uploading = true;
  progressLabel.textContent = `Uploading ${chosen.name}`;
  announced = -1;
  samples = [];
  setProgress(0, chosen.size);
  setBusy(true);
  document.getElementById("submit-bar").scrollIntoView({ block: "nearest" });
  window.addEventListener("beforeunload", warnBeforeLeaving);
  stage = "upload";
  try {
    const uploadId = chosen.size > MULTIPART_FROM ? await sendParts(chosen) : await sendWhole(chosen);
    setProgress(chosen.size, chosen.size);
    progressText.textContent = "100% · Upload complete. Starting the conversion…";
    announcer.textContent = "Upload complete. Starting the conversion.";
    uploading = true; // the XHR is done; still busy until the job exists
    stage = "create";
    cancel.hidden = true;
    const job = await api("/api/jobs", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ upload_id: uploadId, filename: chosen.name, formats }),
    });
    rememberJob({ id: job.job_id, filename: job.filename, created: job.created_at });
    try {
      sessionStorage.setItem(SUBMITTED, "1");
    } catch {
      /* storage disabled: Back may show the old choice */
    }
    window.removeEventListener("beforeunload", warnBeforeLeaving);
    window.location.assign(`/jobs/${encodeURIComponent(job.job_id)}`);
  } catch (error) {
    window.removeEventListener("beforeunload", warnBeforeLeaving);
    uploading = null;
    progress.value = 0;
    setBusy(false);
    progressBox.hidden = true;
    if (error instanceof ApiError && error.status === -1) showWarning("Upload cancelled. Nothing was sent for conversion.");
    else showFailure(error);
    submit.focus();
  }
});

/**
 * Where a failed submission's sentence goes: the file's own problems (too large, not media: the upload
 * was refused) next to the file, and the form then agrees (no "Ready", Convert off until another file);
 * the job's refusal of formats (ones the file cannot give, over the work budget) next to the formats;
 * the rest next to the button.
 */
function showFailure(error) {
  if (!(error instanceof ApiError)) return showError("Something went wrong. Please try again.", "form");
  if (stage === "upload" && [413, 422].includes(error.status)) return refuseFile(error.message);
  showWarning("");
  showError(error.message, stage === "create" && error.status === 422 ? "formats" : "form");
}

cancel.addEventListener("click", () => {
  if (uploading && typeof uploading.abort === "function") uploading.abort();
});

// Restore state after a back navigation (the browser may keep the chosen file and ticks).
window.addEventListener("pageshow", (event) => {
  if (event.persisted) {
    uploading = null;
    progress.value = 0;
    setBusy(false);
    progressBox.hidden = true;
  }
  let submitted = false;
  try {
    submitted = sessionStorage.getItem(SUBMITTED) === "1";
    sessionStorage.removeItem(SUBMITTED);
  } catch {
    /* storage disabled */
  }
  if (submitted) {
    // Back from a job that was started here: a clean form, not the same file ready for a duplicate.
    form.reset();
    input.value = "";
    showWarning("");
  }
  setFile(input.files && input.files[0]);
  renderRecent();
});

// ---- import from a link ----

const importForm = document.getElementById("import-form");
const importUrl = document.getElementById("import-url");
const importError = document.getElementById("import-error");

importForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  importError.hidden = true;
  const formats = selectedFormats();
  const sourceUrl = importUrl.value.trim();
  const problem = !sourceUrl ? "Paste a link to a video." : formats.length ? "" : "Pick at least one format above.";
  if (problem) {
    importError.textContent = problem;
    importError.hidden = false;
    importUrl.focus();
    return;
  }
  try {
    const job = await api("/api/jobs", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ source_url: sourceUrl, formats }),
    });
    rememberJob({ id: job.job_id, filename: job.filename, created: job.created_at });
    window.location.assign(`/jobs/${encodeURIComponent(job.job_id)}`);
  } catch (error) {
    importError.textContent = error instanceof ApiError ? error.message : "Something went wrong. Please try again.";
    importError.hidden = false;
    importUrl.focus();
  }
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

const RECENT_REFRESH_MS = 3000;
let recentTimer = null;

/** While a listed job is still running, look at the running ones again every few seconds. */
function scheduleRecentRefresh() {
  window.clearTimeout(recentTimer);
  const running = [...recentList.children].filter((row) => ["queued", "processing"].includes(row.dataset.status));
  if (!running.length) return;
  recentTimer = window.setTimeout(() => {
    if (document.hidden) return scheduleRecentRefresh();
    for (const row of running) {
      delete row.dataset.fetched;
      fetchStatus(row);
    }
  }, RECENT_REFRESH_MS);
}

document.addEventListener("visibilitychange", () => {
  if (!document.hidden) scheduleRecentRefresh();
});

async function fetchStatus(row) {
  if (row.dataset.fetched) return;
  row.dataset.fetched = "1";
  try {
    const job = await api(`/api/jobs/${encodeURIComponent(row.dataset.jobId)}`);
    setRowStatus(row, job.status);
    const done = job.outputs.filter((out) => out.status === "completed").length;
    const meta = row.querySelector(".recent__meta");
    meta.textContent = [meta.dataset.when, `${done} of ${job.outputs.length} ready`].filter(Boolean).join(" · ");
    scheduleRecentRefresh();
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
  if (recentSection.dataset.source === "server") {
    renderServerRecent();
    return;
  }
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

// With owners (AUTH=keys) the list is the owner's jobs from the server, so it follows a key from one
// browser to another; it carries each job's status, so no row asks for its own.
let serverTimer = null;

async function renderServerRecent() {
  window.clearTimeout(serverTimer);
  let list;
  try {
    list = await api(`/api/jobs?limit=${RECENT_LIMIT}`);
  } catch {
    return; // the list is a convenience: the form works without it
  }
  recentSection.hidden = !list.jobs.length;
  recentList.replaceChildren(
    ...list.jobs.map((job) => {
      const when = formatTime(job.created_at);
      const row = el(
        "li",
        { class: "recent__item", dataset: { jobId: job.job_id, testid: "recent-job", status: job.status } },
        el(
          "div",
          { class: "recent__main" },
          el("a", { href: `/jobs/${encodeURIComponent(job.job_id)}`, class: "recent__link", text: job.filename }),
          el("span", { class: "recent__meta muted small", text: when }),
        ),
        el("span", { class: "badge" }),
      );
      setRowStatus(row, job.status);
      return row;
    }),
  );
  if (list.jobs.some((job) => ["queued", "processing"].includes(job.status))) {
    serverTimer = window.setTimeout(renderServerRecent, RECENT_REFRESH_MS);
  }
}

recentClear?.addEventListener("click", () => {
  clearRecent();
  renderRecent();
  input.focus();
});

refresh();
