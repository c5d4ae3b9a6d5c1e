// The job page: poll the job document and keep one card per output format in step with it.
import {
  api,
  ApiError,
  apiKey,
  authHeaders,
  el,
  FINISHED,
  forgetJob,
  formatBytes,
  formatDuration,
  formatTime,
  JOB_ID,
  rememberJob,
  STATUS_TEXT,
} from "./common.js";

const root = document.getElementById("job");
const jobId = root.dataset.jobId;
const statusBadge = document.getElementById("job-status");
const filenameEl = document.getElementById("job-filename");
const createdEl = document.getElementById("job-created");
const errorBox = document.getElementById("job-error");
const networkBox = document.getElementById("job-network");
const sourceSection = document.getElementById("source");
const sourceFacts = document.getElementById("source-facts");
const outputsSection = document.getElementById("outputs-section");
const outputsEl = document.getElementById("outputs");
const announcer = document.getElementById("announcer");
const jobBar = document.getElementById("job-bar");
const summaryEl = document.getElementById("job-summary");
const archiveLink = document.getElementById("job-archive");
const deleteButton = document.getElementById("job-delete"); // absent on a shared page
const shareButton = document.getElementById("job-share");
const shareBox = document.getElementById("share-box");
const shareUrl = document.getElementById("share-url");
const shareStatus = document.getElementById("share-status");
// The job's JSON: /api/jobs/{id} for its owner, /api/share/{token} on a shared (read-only) page.
const apiBase = root.dataset.api || `/api/jobs/${encodeURIComponent(jobId)}`;
const shared = root.dataset.shared === "1";
// Where previews and downloads are fetched from. A browser sends no Bearer header with <video src> or a
// link, so a page signed in with a key links them through a short-lived share link of its own.
let linkBase = apiBase;
const VIEW_LINK_SECONDS = 12 * 3600;

const POLL_VISIBLE_MS = 1000;
const POLL_HIDDEN_MS = 5000;
// While the document does not change, each poll waits twice as long as the last, up to this; any
// change (a status, progress) brings the next poll back to POLL_VISIBLE_MS.
const POLL_MAX_MS = 10000;
const MAX_RETRY_MS = 15000;

const CODECS = {
  h264: "H.264",
  hevc: "HEVC (H.265)",
  vp8: "VP8",
  vp9: "VP9",
  av1: "AV1",
  mpeg4: "MPEG-4 Part 2",
  mpeg2video: "MPEG-2",
  prores: "ProRes",
  aac: "AAC",
  mp3: "MP3",
  opus: "Opus",
  vorbis: "Vorbis",
  flac: "FLAC",
  ac3: "AC-3",
  eac3: "E-AC-3",
  alac: "ALAC",
  gif: "GIF",
  mjpeg: "JPEG",
  png: "PNG",
};

const cards = new Map(); // format id -> {node, parts, status}
let timer = null;
let failures = 0;
let finished = false;
let lastStatus = null;
let lastSeen = null; // the last document, without its signed links (they change with every poll)
let unchanged = 0; // polls in a row that found it unchanged

function announce(message) {
  // Replace rather than append so screen readers read only the news.
  announcer.textContent = "";
  window.setTimeout(() => {
    announcer.textContent = message;
  }, 50);
}

function setBadge(node, status) {
  node.dataset.status = status;
  node.textContent = STATUS_TEXT[status] || status;
}

// No job here (never was, expired, or just deleted): one sentence, nothing left of the job, and one way on
// (the "Convert another file" button below).
function showMissing(message, title = "No such job", status = "missing") {
  finished = true;
  window.clearTimeout(timer);
  setBadge(statusBadge, status);
  filenameEl.textContent = title;
  document.title = `${title} · Video converter`;
  createdEl.textContent = "";
  errorBox.className = status === "deleted" ? "msg msg--done" : "msg msg--error";
  errorBox.textContent =
    message ||
    (shared
      ? "This share link has expired, or its job was deleted."
      : "There is no conversion job at this address. The link may be mistyped, or the job has expired.");
  errorBox.hidden = false;
  networkBox.hidden = true;
  sourceSection.hidden = true;
  outputsSection.hidden = true;
  jobBar.hidden = true;
  if (deleteButton) deleteButton.hidden = true;
  document.getElementById("job-api").hidden = true;
}

function codec(name) {
  if (!name) return "";
  return CODECS[name] || name.toUpperCase();
}

// ffprobe names demuxers, some of which cover several related containers.
const CONTAINERS = {
  "mov,mp4,m4a,3gp,3g2,mj2": "MP4 / MOV",
  "matroska,webm": "Matroska / WebM",
  mpegts: "MPEG-TS",
  mpeg: "MPEG-PS",
  avi: "AVI",
  flv: "FLV",
  asf: "ASF / WMV",
  ogg: "Ogg",
  wav: "WAV",
  mp3: "MP3",
  flac: "FLAC",
  gif: "GIF",
};

function container(name) {
  return CONTAINERS[name] || name.split(",")[0].toUpperCase();
}

function renderSource(source) {
  if (!source) return;
  const facts = [];
  if (source.duration) facts.push(["Duration", formatDuration(source.duration)]);
  if (source.width && source.height) facts.push(["Resolution", `${source.width} × ${source.height}`]);
  if (source.frame_rate) facts.push(["Frame rate", `${Math.round(source.frame_rate * 100) / 100} fps`]);
  facts.push(["Video", source.video_codec ? codec(source.video_codec) : "None"]);
  facts.push(["Audio", source.audio_codec ? codec(source.audio_codec) : "None"]);
  if (source.format_name) facts.push(["Container", container(source.format_name)]);
  sourceFacts.replaceChildren(
    ...facts.map(([term, value]) => el("div", { class: "fact" }, el("dt", { text: term }), el("dd", { text: value }))),
  );
  sourceSection.hidden = false;
}

// Previews and downloads always go through the API's redirect, which signs a fresh link at the moment
// of use: a link signed earlier can stop working before its own expiry (on AWS it dies with the task
// role's session), and the job document's download_url is only as fresh as the last poll.
function downloadHref(out) {
  return `${linkBase}/outputs/${encodeURIComponent(out.format)}`;
}

function createCard(out) {
  const progressId = `progress-${out.format}`;
  const parts = {
    badge: el("span", { class: "badge" }),
    progress: el("progress", { id: progressId, max: "100", value: "0", "aria-label": `${out.label} conversion progress` }),
    percent: el("span", { class: "card__percent", "aria-hidden": "true" }),
    note: el("p", { class: "card__note", hidden: true }),
    sizeNote: el("p", { class: "card__size-note small muted", hidden: true, dataset: { testid: "size-note" } }),
    preview: el("div", { class: "card__preview", hidden: true }),
    foot: el("div", { class: "card__foot", hidden: true }),
  };
  parts.progressRow = el("div", { class: "card__progress" }, parts.progress, parts.percent);
  const node = el(
    "article",
    {
      class: "card",
      dataset: { format: out.format, kind: out.kind, status: out.status, testid: "output-card" },
      "aria-labelledby": `title-${out.format}`,
    },
    el(
      "header",
      { class: "card__head" },
      el("h3", { id: `title-${out.format}`, class: "card__title", text: out.label }),
      parts.badge,
    ),
    parts.progressRow,
    parts.note,
    parts.sizeNote,
    parts.preview,
    parts.foot,
  );
  outputsEl.append(node);
  const card = { node, parts, status: null, done: false };
  cards.set(out.format, card);
  return card;
}

// A picture for a video before it plays: the job's thumbnail once it is ready, else the video's own first
// frame (preload="metadata" fetches only enough to show it).
let posterHref = null;
// The stream's player (static/player.js): the thumbnail as its poster, the storyboard on its scrub bar.
function streamPreview(out) {
  const done = (format) => currentOutputs.find((o) => o.format === format && o.status === "completed");
  const thumbnail = done("thumbnail");
  const storyboard = done("storyboard");
  return window.StreamPlayer.create({
    src: out.playlist_url,
    poster: thumbnail ? downloadHref(thumbnail) : null,
    track: storyboard ? storyboard.track_url : null,
    link: out.playlist_url,
    title: `Stream of ${out.filename}`,
    // With a key (AUTH=keys) the playlists the API writes need it; same-origin /api/ requests only.
    headers: (url) => {
      const target = new URL(url, window.location.href);
      return target.origin === window.location.origin ? authHeaders(target.pathname) : {};
    },
  });
}

function previewFor(out) {
  if (out.playlist_url && window.StreamPlayer) return streamPreview(out);
  const src = downloadHref(out);
  const size = out.width && out.height ? { width: String(out.width), height: String(out.height) } : {};
  if (out.kind === "video") {
    return el("video", {
      class: "preview",
      controls: true,
      preload: posterHref ? "none" : "metadata", // with a poster, nothing is fetched until it is played
      playsinline: true,
      src,
      "aria-label": `Preview of ${out.filename}`,
      ...(posterHref ? { poster: posterHref } : {}),
      ...size,
    });
  }
  if (out.kind === "audio") {
    return el("audio", { class: "preview", controls: true, preload: "none", src, "aria-label": `Preview of ${out.filename}` });
  }
  // The GIF loads at once (the finished page shows it, not an empty box), over the thumbnail until then.
  const gif = out.format === "gif";
  const image = el("img", { class: "preview", src, alt: `${out.label} of ${out.filename}`, loading: gif ? "eager" : "lazy", decoding: "async", ...size });
  if (gif && posterHref) showPosterBehind(image);
  return image;
}

function showPosterBehind(image) {
  image.classList.add("preview--poster");
  image.style.backgroundImage = `url("${posterHref}")`; // CSSOM: allowed by style-src 'self'
}

// Once the thumbnail is ready: the poster of every video shown so far, and behind the GIF until it loads.
function applyPoster(job) {
  const thumbnail = job.outputs.find((out) => out.format === "thumbnail" && out.status === "completed");
  if (!thumbnail || posterHref) return;
  posterHref = downloadHref(thumbnail);
  for (const { parts } of cards.values()) {
    const video = parts.preview.querySelector("video:not([poster])");
    if (video) video.poster = posterHref;
    const gif = parts.preview.querySelector("img[loading=eager]");
    if (gif) showPosterBehind(gif);
  }
}

const KBIT = 1000;

function bitRate(bits) {
  return bits >= 1000 * KBIT ? `${(bits / (1000 * KBIT)).toFixed(1)} Mbit/s` : `${Math.round(bits / KBIT)} kbit/s`;
}

// What the file is: size in pixels, codecs, bit rate and duration, as far as the output has them.
function outputMeta(out) {
  const meta = [];
  if (out.width && out.height) meta.push(`${out.width} × ${out.height}`);
  const codecs = [out.video_codec, out.audio_codec].filter(Boolean).map(codec);
  if (codecs.length) meta.push(codecs.join(" + "));
  if (out.bit_rate) meta.push(bitRate(out.bit_rate));
  if (out.duration) meta.push(formatDuration(out.duration));
  if (out.segments > 1) meta.push(`converted in ${out.segments} parts`);
  return meta;
}

function completedFoot(out) {
  const meta = outputMeta(out);
  // The name comes from the link's own text (no aria-label), so what is read starts with what is seen.
  const link = el(
    "a",
    { class: "download button button--primary", href: downloadHref(out), download: out.filename },
    el("span", { "aria-hidden": "true", class: "download__icon" }, "↓"),
    " Download",
    el("span", { class: "visually-hidden", text: ` ${out.filename}` }),
    out.size_bytes ? el("span", { class: "download__size" }, formatBytes(out.size_bytes)) : null,
  );
  return [
    el(
      "div",
      { class: "card__file" },
      el("span", { class: "card__filename", text: out.filename }),
      meta.length ? el("span", { class: "card__meta muted small", dataset: { testid: "output-meta" }, text: meta.join(" · ") }) : null,
    ),
    link,
  ];
}

function updateCard(out, initial) {
  const card = cards.get(out.format) || createCard(out);
  const { node, parts } = card;
  const changed = card.status !== out.status;
  if (changed && !initial && card.status !== null) {
    const extra = out.status === "failed" && out.error ? ` ${out.error}` : "";
    announce(`${out.label}: ${(STATUS_TEXT[out.status] || out.status).toLowerCase()}.${extra}`);
  }
  card.status = out.status;
  node.dataset.status = out.status;
  const same = out.same_as ? ` It is the same file as ${labelOf(out.same_as)}, stored once.` : "";
  parts.sizeNote.textContent = `${out.note || ""}${same}`.trim();
  parts.sizeNote.hidden = !parts.sizeNote.textContent;
  setBadge(parts.badge, out.status);

  if (out.status === "completed") {
    if (!card.done && out.download_url) {
      card.done = true;
      parts.progressRow.hidden = true;
      parts.note.hidden = true;
      parts.preview.replaceChildren(previewFor(out));
      parts.preview.hidden = false;
      parts.foot.replaceChildren(...completedFoot(out));
      parts.foot.hidden = false;
    }
    return;
  }
  parts.preview.hidden = true;
  parts.foot.hidden = true;
  if (out.status === "failed") {
    parts.progressRow.hidden = true;
    parts.note.className = "card__note msg msg--error";
    parts.note.textContent = out.error || "The conversion failed.";
    parts.note.hidden = false;
    showRetry(card, out);
    return;
  }
  if (card.retry) card.retry.hidden = true;
  parts.progressRow.hidden = false;
  const percent = Math.max(0, Math.min(100, Math.floor(Number(out.progress) || 0)));
  if (out.status === "processing" && percent === 0) {
    parts.progress.removeAttribute("value"); // indeterminate while FFmpeg starts up
    parts.percent.textContent = "Starting…";
  } else {
    parts.progress.value = percent;
    parts.progress.textContent = `${percent}%`;
    parts.percent.textContent = out.status === "queued" ? waitingText(out) : `${percent}%`;
  }
  // A queued output with an error is waiting for another attempt.
  if (out.status === "queued" && out.error) {
    parts.note.className = "card__note small muted";
    parts.note.textContent = `Retrying soon. ${out.error}`;
    parts.note.hidden = false;
  } else if (out.status === "processing" && out.segments > 1) {
    // A long video: its parts are converted side by side, then joined.
    parts.note.className = "card__note small muted";
    parts.note.textContent =
      percent >= 95 ? `Joining its ${out.segments} parts` : `Converting in ${out.segments} parts at once`;
    parts.note.hidden = false;
  } else parts.note.hidden = true;
}

let labels = {}; // format id -> label, from the last document
let readyIn = {}; // format id -> seconds until it is expected to be ready, from the last document

function waitingText(out) {
  const seconds = readyIn[out.format];
  return seconds ? `Waiting for a worker · ready in about ${aboutTime(seconds)}` : "Waiting for a worker";
}

function labelOf(format) {
  return labels[format] || format;
}
let currentOutputs = []; // the last poll's outputs: a stream's player takes its poster and storyboard there

function render(job) {
  const initial = lastStatus === null;
  lastJob = job;
  labels = Object.fromEntries(job.outputs.map((out) => [out.format, out.label]));
  readyIn = job.estimate ? job.estimate.outputs : {};
  filenameEl.textContent = job.filename;
  createdEl.textContent = job.created_at ? `Started ${formatTime(job.created_at)}` : "";
  setBadge(statusBadge, job.status);
  const done = job.outputs.filter((out) => out.status === "completed").length;
  statusBadge.title = `${done} of ${job.outputs.length} ready`;
  document.title = `${STATUS_TEXT[job.status] || job.status}: ${job.filename} · Video converter`;
  renderSource(job.source);
  renderSummary(job, done);
  if (job.error) {
    errorBox.textContent = job.error; // one sentence for the whole job; the cards just say "Not converted"
    errorBox.hidden = false;
  }
  outputsSection.hidden = false;
  applyPoster(job);
  currentOutputs = job.outputs;
  for (const out of job.outputs) updateCard(out, initial);
  renderAdd(job);
  if (lastStatus !== job.status) {
    if (job.status === "completed") announce(`All ${job.outputs.length} conversions are ready to download.`);
    else if (job.status === "partial") announce(`Finished: ${done} of ${job.outputs.length} conversions are ready; some failed.`);
    else if (job.status === "failed") announce("The conversion failed.");
    else if (initial) announce(`Job ${(STATUS_TEXT[job.status] || job.status).toLowerCase()}.`);
  }
  lastStatus = job.status;
}

// Time left: the server's estimate (the probed duration and this server's measured speed of each
// format, laid over its workers, corrected by each output's progress), counted down between polls.
let estimate = null; // [seconds left, at Date.now()]

function secondsLeft(job) {
  if (job.estimate) estimate = [Number(job.estimate.seconds_left) || 0, Date.now()];
  if (!estimate) return null;
  return Math.max(0, estimate[0] - (Date.now() - estimate[1]) / 1000);
}

function aboutTime(seconds) {
  if (seconds < 60) return `${Math.max(5, Math.ceil(seconds / 5) * 5)} s`;
  return `${Math.round(seconds / 60)} min`;
}

function renderSummary(job, done) {
  const total = job.outputs.length;
  const parts = [`${done} of ${total} ready`];
  const failed = job.outputs.filter((out) => out.status === "failed").length;
  if (failed) parts.push(`${failed} failed`);
  if (!FINISHED.has(job.status)) {
    const left = secondsLeft(job);
    if (left !== null) parts.push(left > 0 ? `about ${aboutTime(left)} left` : "almost done");
  }
  summaryEl.textContent = parts.join(" · ");
  archiveLink.href = `${linkBase}/archive`;
  // An output that is another's file (same_as) is in the ZIP once.
  const files = job.outputs.filter((out) => out.status === "completed" && !out.same_as).length;
  archiveLink.hidden = files < 2; // one file is its own download
  archiveLink.replaceChildren("Download all", el("span", { class: "visually-hidden", text: ` ${files} ready files,` }), " (.zip)");
  jobBar.hidden = false;
  if (deleteButton) deleteButton.hidden = false;
}

deleteButton?.addEventListener("click", async () => {
  const name = filenameEl.textContent;
  const running = lastStatus && !FINISHED.has(lastStatus);
  const question = running
    ? `Stop converting “${name}” and delete it with every file made so far? This cannot be undone.`
    : `Delete “${name}” and every converted file? Download links stop working. This cannot be undone.`;
  if (!window.confirm(question)) return;
  deleteButton.disabled = true;
  try {
    await api(apiBase, { method: "DELETE" });
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 404) {
      deleteButton.disabled = false;
      networkBox.replaceChildren(`The job could not be deleted: ${error.message}`);
      networkBox.hidden = false;
      deleteButton.focus();
      return;
    }
  }
  forgetJob(jobId);
  finished = true;
  window.clearTimeout(timer);
  showMissing("This job was deleted, with its original and every converted file.", "Job deleted", "deleted");
  statusBadge.textContent = "Deleted";
  document.getElementById("main").focus();
});

function schedule(delay) {
  window.clearTimeout(timer);
  timer = window.setTimeout(poll, delay);
}

// The next poll's delay: back off (doubling, up to POLL_MAX_MS) while nothing changes.
function nextDelay(job) {
  // The estimate moves with the clock: only the rest of the document says whether anything changed.
  const seen = JSON.stringify(job, (key, value) => (key === "download_url" || key === "estimate" ? undefined : value));
  unchanged = seen === lastSeen ? unchanged + 1 : 0;
  lastSeen = seen;
  const base = document.hidden ? POLL_HIDDEN_MS : POLL_VISIBLE_MS;
  return Math.min(POLL_MAX_MS, base * 2 ** unchanged);
}

async function poll() {
  if (finished) return;
  window.clearTimeout(timer);
  try {
    const job = await api(apiBase);
    if (lastStatus === null && apiKey() && !shared) linkBase = await viewLink();
    if (failures) {
      failures = 0;
      networkBox.hidden = true;
    }
    if (lastStatus === null && !shared) rememberJob({ id: job.job_id, filename: job.filename, created: job.created_at });
    render(job);
    if (FINISHED.has(job.status)) {
      finished = true;
      return;
    }
    schedule(nextDelay(job));
  } catch (error) {
    if (error.status === 404) {
      showMissing();
      return;
    }
    failures += 1;
    const delay = Math.min(MAX_RETRY_MS, 1000 * 2 ** failures);
    networkBox.replaceChildren(
      `${error.message} Retrying in ${Math.round(delay / 1000)} s… `,
      el("button", { type: "button", class: "button button--small", onclick: () => poll(), text: "Retry now" }),
    );
    networkBox.hidden = false;
    if (lastStatus === null) setBadge(statusBadge, "unknown");
    schedule(delay);
  }
}

document.addEventListener("visibilitychange", () => {
  if (!document.hidden && !finished && !failures) poll(); // catch up at once when the tab comes back
});

/** A share link's path for this page's own previews and downloads (signed in with a key). */
async function viewLink() {
  const link = await share(VIEW_LINK_SECONDS);
  return new URL(link.api_url, window.location.href).pathname;
}

function share(seconds) {
  return api(`${apiBase}/share`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(seconds ? { expires_in: seconds } : {}),
  });
}

shareButton?.addEventListener("click", async () => {
  shareButton.disabled = true;
  try {
    const link = await share(0);
    shareUrl.value = link.url;
    shareBox.hidden = false;
    const until = formatTime(link.expires_at);
    let copied = false;
    try {
      await navigator.clipboard.writeText(link.url);
      copied = true;
    } catch {
      shareUrl.select(); // no clipboard here (an http page, or refused): the link is selected to copy
    }
    shareStatus.textContent = `${copied ? "Link copied. " : "Copy this link. "}Anyone with it can watch and download these files until ${until}; they cannot delete the job.`;
  } catch (error) {
    shareBox.hidden = false;
    shareStatus.textContent = `No share link could be made: ${error.message}`;
  } finally {
    shareButton.disabled = false;
  }
});

// ---- a second chance: retry a failed output, add formats (from the stored original) ----

let lastJob = null;

/** Whether the source can give this output at all (an audio-only file has no picture for a video). */
function sourceCanGive(source, kind) {
  if (!source) return true; // not probed yet: the server decides
  return kind === "audio" ? Boolean(source.audio_codec) : Boolean(source.video_codec);
}

function showRetry(card, out) {
  const usable = !shared && lastJob && !lastJob.error && sourceCanGive(lastJob.source, out.kind);
  if (!card.retry) {
    card.retry = el("button", { type: "button", class: "button button--small card__retry", text: "Retry" });
    card.retry.setAttribute("aria-label", `Retry ${out.label}`);
    card.retry.addEventListener("click", () => retry(card, out.format));
    card.node.append(card.retry);
  }
  card.retry.disabled = false;
  card.retry.hidden = !usable;
}

/** After a retry or an addition: show the job as the server answered, and follow it again. */
function reopened(job) {
  finished = false;
  unchanged = 0;
  render(job);
  schedule(POLL_VISIBLE_MS);
}

async function retry(card, format) {
  card.retry.disabled = true;
  try {
    reopened(await api(`/api/jobs/${encodeURIComponent(jobId)}/outputs/${encodeURIComponent(format)}/retry`, { method: "POST" }));
    announce(`${card.node.querySelector(".card__title").textContent}: queued again.`);
  } catch (error) {
    card.retry.disabled = false;
    card.parts.note.textContent = error.message;
  }
}

let addBox = null; // the "Add formats" form, made once the formats are known
let allFormats = null;

async function renderAdd(job) {
  if (shared) return; // a shared page is read-only
  if (allFormats === null) {
    allFormats = [];
    try {
      allFormats = await api("/api/formats");
    } catch {
      return; // no list, no form: the API route still works
    }
  }
  const missing = allFormats.filter((f) => !job.outputs.some((out) => out.format === f.id) && sourceCanGive(job.source, f.kind));
  if (!addBox) {
    if (!missing.length) return;
    addBox = el("details", { class: "panel add-formats", dataset: { testid: "add-formats" } });
    outputsSection.after(addBox);
  }
  addBox.hidden = Boolean(job.error) || !missing.length;
  const shown = [...addBox.querySelectorAll('input[name="add"]')].map((box) => box.value).join();
  if (shown === missing.map((f) => f.id).join()) return; // unchanged: keep what is ticked
  const error = el("p", { class: "msg msg--error", role: "alert", hidden: true });
  const submit = el("button", { type: "submit", class: "button button--primary", text: "Add" });
  const form = el(
    "form",
    { class: "add-formats__form" },
    el(
      "fieldset",
      {},
      el("legend", { class: "visually-hidden", text: "Formats to add" }),
      ...missing.map((f) =>
        el("label", { class: "add-formats__choice" }, el("input", { type: "checkbox", name: "add", value: f.id }), ` ${f.label}`),
      ),
    ),
    error,
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const formats = [...form.querySelectorAll('input[name="add"]:checked')].map((box) => box.value);
    if (!formats.length) {
      error.textContent = "Pick at least one format to add.";
      error.hidden = false;
      return;
    }
    submit.disabled = true;
    try {
      const added = await api(`/api/jobs/${encodeURIComponent(jobId)}/outputs`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ formats }),
      });
      addBox.open = false;
      reopened(added);
      announce(`Added ${formats.length === 1 ? "1 format" : `${formats.length} formats`}.`);
    } catch (failure) {
      error.textContent = failure.message;
      error.hidden = false;
    } finally {
      submit.disabled = false;
    }
  });
  addBox.replaceChildren(el("summary", { text: "Add formats" }), el("p", { class: "muted small", text: "Made from the file you uploaded: no second upload." }), form);
}

if (shared || JOB_ID.test(jobId)) poll();
else showMissing();
