// The stream player: an adaptive stream (HLS) in a <video>, with hls.js where the browser has Media
// Source Extensions and the browser's own HLS where it has that instead (Safari), a quality menu
// (Auto plus each rendition), the poster, and storyboard previews on a scrub bar.
//
// A classic script, self-contained, so the same file plays a job's stream on the job page and the
// bundle's index.html from any static host: StreamPlayer.create({...}) returns the player's element,
// and every <div data-stream-src="..."> on the page becomes a player when the script runs.
// hls.js (pinned, vendored with its licence) is loaded beside this file, checked by its SHA-384
// (Subresource Integrity): a changed file is refused, not run.
(function () {
  "use strict";

  const HLS_FILE = "vendor/hls.js/hls.min.js";
  const HLS_INTEGRITY = "sha384-p9vgU/7IYJWd3I4STrtqxqR/2cAQlhIX7D/HrTnIMEjjcUox165b7se7sxmm3zDg";
  const HLS_TYPE = "application/vnd.apple.mpegurl";
  const SEEK_STEP = 5; // seconds, for the arrow keys on the scrub bar
  const base = document.currentScript ? document.currentScript.src : document.baseURI;
  let hlsLoading = null;

  function node(tag, attrs, ...children) {
    const made = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") made.textContent = value;
      else made.setAttribute(key, value === true ? "" : String(value));
    }
    made.append(...children.filter((child) => child !== null && child !== undefined));
    return made;
  }

  function loadHls() {
    if (window.Hls) return Promise.resolve(window.Hls);
    if (!hlsLoading) {
      hlsLoading = new Promise((resolve, reject) => {
        const script = node("script", { src: new URL(HLS_FILE, base).href, integrity: HLS_INTEGRITY });
        script.onload = () => (window.Hls ? resolve(window.Hls) : reject(new Error("hls.js did not load")));
        script.onerror = () => reject(new Error("hls.js could not be loaded"));
        document.head.append(script);
      });
    }
    return hlsLoading;
  }

  function clock(seconds) {
    const whole = Math.max(0, Math.floor(seconds));
    const hours = Math.floor(whole / 3600);
    const minutes = String(Math.floor((whole % 3600) / 60));
    const rest = String(whole % 60).padStart(2, "0");
    return hours ? `${hours}:${minutes.padStart(2, "0")}:${rest}` : `${minutes}:${rest}`;
  }

  function rate(bits) {
    return bits >= 1e6 ? `${(bits / 1e6).toFixed(1)} Mbit/s` : `${Math.round(bits / 1e3)} kbit/s`;
  }

  // WebVTT thumbnails: "start --> end" then "sprite.jpg#xywh=x,y,w,h".
  function parseTrack(text, trackUrl) {
    const cues = [];
    const lines = text.split(/\r?\n/);
    const time = (value) => value.split(":").reduce((total, part) => total * 60 + Number(part), 0);
    for (let i = 0; i < lines.length - 1; i += 1) {
      const match = /^([\d:.]+)\s+-->\s+([\d:.]+)/.exec(lines[i]);
      const image = /^(.*)#xywh=(\d+),(\d+),(\d+),(\d+)$/.exec(lines[i + 1] || "");
      if (!match || !image) continue;
      const [x, y, w, h] = image.slice(2).map(Number);
      cues.push({ start: time(match[1]), end: time(match[2]), url: new URL(image[1], trackUrl).href, x, y, w, h });
    }
    return cues;
  }

  function qualityMenu(root, video, hls) {
    const select = node("select", { class: "player__quality", "data-testid": "quality", "aria-label": "Quality" });
    select.append(node("option", { value: "-1", text: "Auto" }));
    hls.levels.forEach((level, index) => {
      const label = `${Math.min(level.width, level.height)}p · ${rate(level.bitrate)}`;
      select.append(node("option", { value: String(index), text: label }));
    });
    select.addEventListener("change", () => {
      // currentLevel switches at once (flushing the buffer); -1 goes back to choosing by bandwidth.
      hls.currentLevel = Number(select.value);
    });
    const playing = node("span", { class: "player__level muted small", "aria-live": "off" });
    hls.on(window.Hls.Events.LEVEL_SWITCHED, (_, data) => {
      const level = hls.levels[data.level];
      root.dataset.level = String(level.height);
      playing.textContent = `Playing ${level.width} × ${level.height}`;
    });
    return node("label", { class: "player__menu" }, "Quality ", select, playing);
  }

  // ``headers(url)``: what a request of the player needs (the page's API key, for the playlists the API
  // writes); the media files are signed URLs and need nothing.
  function attachHls(root, video, src, controls, headers) {
    return loadHls().then((Hls) => {
      if (!Hls.isSupported()) return false;
      const xhrSetup = (xhr, url) => {
        for (const [name, value] of Object.entries(headers(url))) xhr.setRequestHeader(name, value);
      };
      const hls = new Hls({ enableWorker: false, capLevelToPlayerSize: false, xhrSetup });
      root.hls = hls;
      let reloads = 0;
      hls.on(Hls.Events.MANIFEST_PARSED, () => controls.prepend(qualityMenu(root, video, hls)));
      hls.on(Hls.Events.ERROR, (_, data) => {
        if (!data.fatal) return;
        if (data.type === Hls.ErrorTypes.NETWORK_ERROR && reloads < 3) {
          // The media URLs are signed and expire: fetch the playlists again (freshly signed) and go on.
          reloads += 1;
          const at = video.currentTime;
          hls.loadSource(src);
          hls.startLoad(at);
        } else if (data.type === Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
        else root.dataset.error = data.details;
      });
      hls.loadSource(src);
      hls.attachMedia(video);
      return true;
    });
  }

  function scrubBar(video, trackUrl, headers) {
    const fill = node("div", { class: "scrub__fill" });
    const thumb = node("div", { class: "scrub__thumb", hidden: true, "data-testid": "storyboard-preview" });
    const label = node("span", { class: "scrub__time" });
    const preview = node("div", { class: "scrub__preview", hidden: true }, thumb, label);
    const bar = node(
      "div",
      { class: "scrub", role: "slider", tabindex: "0", "aria-label": "Seek", "aria-valuemin": "0", "data-testid": "scrub" },
      fill,
      preview,
    );
    let cues = [];
    if (trackUrl) {
      fetch(trackUrl, { headers: headers(new URL(trackUrl, document.baseURI).href) })
        .then((answer) => (answer.ok ? answer.text() : ""))
        .then((text) => {
          cues = parseTrack(text, new URL(trackUrl, document.baseURI).href);
          bar.dataset.cues = String(cues.length);
        })
        .catch(() => {});
    }
    const at = (event) => {
      const box = bar.getBoundingClientRect();
      return Math.max(0, Math.min(1, (event.clientX - box.left) / box.width)) * (video.duration || 0);
    };
    bar.addEventListener("pointermove", (event) => {
      const seconds = at(event);
      const cue = cues.find((c) => seconds >= c.start && seconds < c.end) || cues[cues.length - 1];
      label.textContent = clock(seconds);
      preview.style.left = `${(seconds / (video.duration || 1)) * 100}%`;
      preview.hidden = false;
      thumb.hidden = !cue;
      if (cue) {
        thumb.style.width = `${cue.w}px`;
        thumb.style.height = `${cue.h}px`;
        thumb.style.backgroundImage = `url("${cue.url}")`;
        thumb.style.backgroundPosition = `-${cue.x}px -${cue.y}px`;
        thumb.dataset.tile = `${cue.x},${cue.y}`;
      }
    });
    bar.addEventListener("pointerleave", () => (preview.hidden = true));
    bar.addEventListener("click", (event) => (video.currentTime = at(event)));
    bar.addEventListener("keydown", (event) => {
      const step = { ArrowLeft: -SEEK_STEP, ArrowRight: SEEK_STEP }[event.key];
      if (step === undefined) return;
      event.preventDefault();
      video.currentTime = Math.max(0, Math.min(video.duration || 0, video.currentTime + step));
    });
    const update = () => {
      const total = video.duration || 0;
      fill.style.width = `${total ? (video.currentTime / total) * 100 : 0}%`;
      bar.setAttribute("aria-valuemax", String(Math.round(total)));
      bar.setAttribute("aria-valuenow", String(Math.round(video.currentTime)));
      bar.setAttribute("aria-valuetext", `${clock(video.currentTime)} of ${clock(total)}`);
    };
    video.addEventListener("timeupdate", update);
    video.addEventListener("durationchange", update);
    return bar;
  }

  function sharing(link, title) {
    const absolute = new URL(link, document.baseURI).href;
    const field = node("input", { class: "player__link", readonly: true, value: absolute, "aria-label": "Stream link" });
    const copied = node("span", { class: "muted small", "aria-live": "polite" });
    const copy = node("button", { type: "button", class: "button button--small", text: "Copy link" });
    copy.addEventListener("click", () => {
      field.select();
      const done = () => (copied.textContent = "Copied.");
      if (navigator.clipboard) navigator.clipboard.writeText(absolute).then(done, () => document.execCommand("copy"));
      else if (document.execCommand("copy")) done();
    });
    const hlsUrl = new URL(HLS_FILE, base).href;
    const snippet =
      `<video id="stream" controls playsinline title="${title.replace(/"/g, "&quot;")}"></video>\n` +
      `<script src="${hlsUrl}"></script>\n` +
      "<script>\n" +
      `  const video = document.getElementById("stream"), src = "${absolute}";\n` +
      "  if (window.Hls && Hls.isSupported()) { const hls = new Hls(); hls.loadSource(src); hls.attachMedia(video); }\n" +
      "  else video.src = src; // Safari plays HLS itself\n" +
      "</script>";
    const embed = node(
      "details",
      { class: "player__embed" },
      node("summary", { text: "Embed code" }),
      node("pre", { class: "small", "data-testid": "embed-code" }, node("code", { text: snippet })),
    );
    return node("div", { class: "player__share" }, field, copy, copied, embed);
  }

  function create(options) {
    const { src, poster, track, link, title = "Video", headers = () => ({}) } = options;
    const video = node("video", { class: "preview", controls: true, playsinline: true, preload: "metadata", poster, "aria-label": title });
    const controls = node("div", { class: "player__controls" });
    const root = node("div", { class: "player", "data-testid": "stream-player" }, video, scrubBar(video, track, headers), controls);
    root.video = video;
    if (link) controls.append(sharing(link, title));
    const native = () => {
      if (video.canPlayType(HLS_TYPE)) {
        video.src = src;
        root.dataset.engine = "native";
      } else root.dataset.error = "This browser cannot play HLS streams.";
    };
    attachHls(root, video, src, controls, headers)
      .then((attached) => (attached ? (root.dataset.engine = "hls.js") : native()))
      .catch(native);
    return root;
  }

  window.StreamPlayer = { create, parseTrack };
  for (const holder of document.querySelectorAll("[data-stream-src]")) {
    const { streamSrc, streamPoster, streamTrack, streamTitle } = holder.dataset;
    holder.replaceWith(create({ src: streamSrc, poster: streamPoster, track: streamTrack, title: streamTitle }));
  }
})();
