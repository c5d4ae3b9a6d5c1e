// The job page: poll the job document and keep one card per output format in step with it.
import {
  api,
  ApiError,
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
const deleteButton = document.getElementById("job-delete");

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

function showMissing(message) {
  finished = true;
  window.clearTimeout(timer);
  setBadge(statusBadge, "missing");
  filenameEl.textContent = "No such job";
  document.title = "No such job · Video converter";
  errorBox.replaceChildren(
    message || "There is no conversion job at this address. The link may be mistyped, or the job has expired. ",
    el("a", { href: "/", text: "Start a new conversion" }),
    ".",
  );
  errorBox.hidden = false;
  networkBox.hidden = true;
  sourceSection.hidden = true;
  outputsSection.hidden = true;
  jobBar.hidden = true;
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
  return `/api/jobs/${encodeURIComponent(jobId)}/outputs/${encodeURIComponent(out.format)}`;
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
      preload: "none", // nothing is fetched until the person plays it
      playsinline: true,
      src,
      "aria-label": `Preview of ${out.filename}`,
      ...size,
    });
  }
  if (out.kind === "audio") {
    return el("audio", { class: "preview", controls: true, preload: "none", src, "aria-label": `Preview of ${out.filename}` });
  }
  // loading=lazy: a GIF below the fold (often over a megabyte) loads only when scrolled to.
  return el("img", { class: "preview", src, alt: `${out.label} of ${out.filename}`, loading: "lazy", decoding: "async", ...size });
}

function completedFoot(out) {
  const meta = [];
  if (out.width && out.height) meta.push(`${out.width} × ${out.height}`);
  if (out.duration && out.kind !== "image") meta.push(formatDuration(out.duration));
  if (out.segments > 1) meta.push(`converted in ${out.segments} parts`);
  const link = el(
    "a",
    {
      class: "download button button--primary",
      href: downloadHref(out),
      download: out.filename,
      "aria-label": `Download ${out.filename}${out.size_bytes ? `, ${formatBytes(out.size_bytes)}` : ""}`,
    },
    el("span", { "aria-hidden": "true", class: "download__icon" }, "↓"),
    " Download",
    out.size_bytes ? el("span", { class: "download__size" }, formatBytes(out.size_bytes)) : null,
  );
  return [
    el(
      "div",
      { class: "card__file" },
      el("span", { class: "card__filename", text: out.filename }),
      meta.length ? el("span", { class: "muted small", text: meta.join(" · ") }) : null,
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
  parts.sizeNote.textContent = out.note || "";
  parts.sizeNote.hidden = !out.note;
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
    return;
  }
  parts.progressRow.hidden = false;
  const percent = Math.max(0, Math.min(100, Math.floor(Number(out.progress) || 0)));
  if (out.status === "processing" && percent === 0) {
    parts.progress.removeAttribute("value"); // indeterminate while FFmpeg starts up
    parts.percent.textContent = "Starting…";
  } else {
    parts.progress.value = percent;
    parts.progress.textContent = `${percent}%`;
    parts.percent.textContent = out.status === "queued" ? "Waiting for a worker" : `${percent}%`;
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

let currentOutputs = []; // the last poll's outputs: a stream's player takes its poster and storyboard there

function render(job) {
  const initial = lastStatus === null;
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
  currentOutputs = job.outputs;
  for (const out of job.outputs) updateCard(out, initial);
  if (lastStatus !== job.status) {
    if (job.status === "completed") announce(`All ${job.outputs.length} conversions are ready to download.`);
    else if (job.status === "partial") announce(`Finished: ${done} of ${job.outputs.length} conversions are ready; some failed.`);
    else if (job.status === "failed") announce("The conversion failed.");
    else if (initial) announce(`Job ${(STATUS_TEXT[job.status] || job.status).toLowerCase()}.`);
  }
  lastStatus = job.status;
}

// Time left: each running output's pace so far (percent per second since it was first seen running).
const started = new Map(); // format -> [time ms, progress] when first seen processing

function secondsLeft(job) {
  const now = Date.now();
  let longest = 0;
  for (const out of job.outputs) {
    if (out.status !== "processing") continue;
    const progress = Number(out.progress) || 0;
    if (!started.has(out.format)) started.set(out.format, [now, progress]);
    const [t0, p0] = started.get(out.format);
    const elapsed = (now - t0) / 1000;
    if (elapsed < 2 || progress <= p0) return null; // too early to tell
    longest = Math.max(longest, ((100 - progress) * elapsed) / (progress - p0));
  }
  return job.outputs.some((out) => out.status === "queued") ? null : longest;
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
    if (left) parts.push(`about ${aboutTime(left)} left`);
  }
  summaryEl.textContent = parts.join(" · ");
  archiveLink.href = `/api/jobs/${encodeURIComponent(jobId)}/archive`;
  archiveLink.hidden = done < 2; // one file is its own download
  archiveLink.setAttribute("aria-label", `Download all ${done} ready files as one ZIP`);
  jobBar.hidden = false;
}

deleteButton.addEventListener("click", async () => {
  const name = filenameEl.textContent;
  const running = lastStatus && !FINISHED.has(lastStatus);
  const question = running
    ? `Stop converting “${name}” and delete it with every file made so far? This cannot be undone.`
    : `Delete “${name}” and every converted file? Download links stop working. This cannot be undone.`;
  if (!window.confirm(question)) return;
  deleteButton.disabled = true;
  try {
    await api(`/api/jobs/${encodeURIComponent(jobId)}`, { method: "DELETE" });
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
  showMissing("This job was deleted, with its original and every converted file. ");
  jobBar.hidden = true;
  document.getElementById("main").focus();
});

function schedule(delay) {
  window.clearTimeout(timer);
  timer = window.setTimeout(poll, delay);
}

// The next poll's delay: back off (doubling, up to POLL_MAX_MS) while nothing changes.
function nextDelay(job) {
  const seen = JSON.stringify(job, (key, value) => (key === "download_url" ? undefined : value));
  unchanged = seen === lastSeen ? unchanged + 1 : 0;
  lastSeen = seen;
  const base = document.hidden ? POLL_HIDDEN_MS : POLL_VISIBLE_MS;
  return Math.min(POLL_MAX_MS, base * 2 ** unchanged);
}

async function poll() {
  if (finished) return;
  window.clearTimeout(timer);
  try {
    const job = await api(`/api/jobs/${encodeURIComponent(jobId)}`);
    if (failures) {
      failures = 0;
      networkBox.hidden = true;
    }
    if (lastStatus === null) rememberJob({ id: job.job_id, filename: job.filename, created: job.created_at });
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

if (JOB_ID.test(jobId)) poll();
else showMissing();
