// corrvos annotate: the page. Plain JavaScript, no build step, no network access beyond this server.
// The current frame's mask is a Uint8Array of H*W object ids (0 background); strokes edit it here and every
// finished stroke uploads the whole mask as the frame's annotation (PUT /api/annotations/<i>, raw bytes).
"use strict";

const $ = (id) => document.getElementById(id);
const S = {
  project: null, frame: 0, label: null, kind: "none", selected: null, tool: "brush", zoom: 1, playing: false,
  target: 0, undo: [], polygon: [], drawing: false, last: null, pending: 0, loadToken: 0, polling: null, written: -1, overlay: true,
};
window.annotate = S; // for the browser tests and the curious
let W = 0, H = 0;
const frameCtx = $("frame-canvas").getContext("2d");
const overlayCtx = $("overlay").getContext("2d");
const drawCtx = $("draw-canvas").getContext("2d");

// ------------------------------------------------------------------------------------------------ server
async function api(method, url, body, type) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.body = type === "json" ? JSON.stringify(body) : body;
    options.headers["Content-Type"] = type === "json" ? "application/json" : type;
  }
  const answer = await fetch(url, options);
  if (!answer.ok) {
    let text = `${answer.status} ${answer.statusText}`;
    try { text = (await answer.json()).error || text; } catch (e) { /* not JSON */ }
    throw new Error(text);
  }
  return answer;
}

function say(text, ok) {
  const m = $("message");
  m.textContent = text;
  m.className = ok ? "ok" : "";
}

function guarded(fn) {
  return async (...args) => {
    try { await fn(...args); } catch (e) { say(e.message); }
  };
}

function applyState(state) {
  S.project = state;
  renderObjects();
  renderStrip();
  const job = state.job || {};
  document.body.dataset.job = job.state || "idle";
  const [decoded, total] = state.decoded || [0, 0];
  if (decoded < total) { // a video file is being decoded: say how far, and look again
    say(`decoding the video: ${decoded} / ${total} frames (propagation and exports wait for the end)`, true);
    clearTimeout(S.decodeTimer);
    S.decodeTimer = setTimeout(guarded(refreshState), 1000);
  } else if (S.decodeTimer) {
    S.decodeTimer = null;
    say("video decoded", true);
  }
}

async function refreshState() {
  applyState(await (await api("GET", "/api/project")).json());
}

let settingsTimer = null;
function saveSettings(values) {
  clearTimeout(settingsTimer);
  settingsTimer = setTimeout(guarded(async () => { await api("PATCH", "/api/settings", values, "json"); }), 400);
}

// ------------------------------------------------------------------------------------------------ frames
async function showFrame(i) {
  const n = S.project.frames.length;
  i = Math.max(0, Math.min(n - 1, i));
  S.polygon = [];
  S.target = i; // where the next step starts, before this frame has loaded
  const token = ++S.loadToken;
  document.body.dataset.ready = "0";
  const image = new Image();
  image.src = `/api/frames/${i}`;
  await image.decode();
  const answer = await api("GET", `/api/masks/${i}`);
  const bytes = answer.status === 204 ? null : new Uint8Array(await answer.arrayBuffer());
  if (token !== S.loadToken) return; // another frame was asked for meanwhile
  if (i !== S.frame) S.undo = []; // undo is per frame: the masks before each stroke since the frame was shown
  S.frame = i;
  frameCtx.drawImage(image, 0, 0);
  S.label = bytes || new Uint8Array(W * H);
  S.kind = answer.headers.get("X-Mask-Kind") || "none";
  $("slider").value = i;
  $("frame-label").textContent = `${i} / ${n - 1}  (${S.project.frames[i]})`;
  const annotated = S.project.annotated.includes(i);
  $("frame-kind").textContent = annotated ? "annotated frame" + (S.kind === "propagated" ? " (propagated since)" : "")
    : S.kind === "propagated" ? "propagated mask: drawing makes this an annotated frame" : "no mask on this frame";
  renderOverlay();
  renderDraw();
  renderStrip();
  document.body.dataset.ready = "1";
  document.body.dataset.frame = String(i);
  saveSettings({ frame: i });
}

async function play() {
  S.playing = !S.playing;
  $("play").innerHTML = S.playing ? "&#10074;&#10074;" : "&#9654;";
  while (S.playing) {
    const started = performance.now();
    await showFrame((S.frame + 1) % S.project.frames.length);
    const wait = 1000 / (S.project.fps || 24) - (performance.now() - started);
    await new Promise((done) => setTimeout(done, Math.max(0, wait)));
  }
}

// ------------------------------------------------------------------------------------------------ panels
function renderObjects() {
  const list = $("objects");
  list.innerHTML = "";
  if (S.selected === null && S.project.objects.length) S.selected = S.project.objects[0].id;
  S.project.objects.forEach((obj, k) => {
    const item = document.createElement("li");
    item.className = obj.id === S.selected ? "selected" : "";
    item.dataset.id = obj.id;
    const pick = document.createElement("button");
    pick.textContent = k < 9 ? String(k + 1) : "·";
    pick.title = `select (key ${k + 1})`;
    pick.onclick = () => selectObject(obj.id);
    const colour = document.createElement("input");
    colour.type = "color";
    colour.value = obj.colour;
    colour.onchange = guarded(async () => {
      applyState(await (await api("PATCH", `/api/objects/${obj.id}`, { colour: colour.value }, "json")).json());
      renderOverlay();
    });
    const name = document.createElement("input");
    name.type = "text";
    name.value = obj.name;
    name.onchange = guarded(async () => {
      applyState(await (await api("PATCH", `/api/objects/${obj.id}`, { name: name.value }, "json")).json());
    });
    const remove = document.createElement("button");
    remove.textContent = "✕";
    remove.title = "delete this object from every frame";
    remove.onclick = guarded(async () => {
      applyState(await (await api("DELETE", `/api/objects/${obj.id}`)).json());
      if (S.selected === obj.id) S.selected = null;
      renderObjects();
      await showFrame(S.target);
    });
    item.append(pick, colour, name, remove);
    list.append(item);
  });
}

function selectObject(id) {
  S.selected = id;
  renderObjects();
}

function renderStrip() {
  const strip = $("strip"), n = S.project.frames.length;
  strip.width = n;
  const ctx = strip.getContext("2d");
  ctx.clearRect(0, 0, n, 10);
  ctx.fillStyle = "#3c8c3c";
  for (const i of S.project.propagated) ctx.fillRect(i, 5, 1, 5);
  ctx.fillStyle = "#e0c040";
  for (const i of S.project.annotated) ctx.fillRect(i, 0, 1, 10);
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(S.frame, 0, Math.max(1, n / 300), 3);
}

function setZoom(zoom) {
  S.zoom = Math.max(0.25, Math.min(16, zoom));
  const w = `${W * S.zoom}px`, h = `${H * S.zoom}px`;
  for (const id of ["stage", "frame-canvas", "overlay", "draw-canvas"]) {
    $(id).style.width = w;
    $(id).style.height = h;
  }
  $("zoom-label").textContent = `${Math.round(S.zoom * 100)}%`;
  renderDraw();
}

function setTool(tool) {
  S.tool = tool;
  $(`tool-${tool}`).checked = true;
  S.polygon = [];
  renderDraw();
}

// ------------------------------------------------------------------------------------------------ jobs
async function propagate(direction) {
  const status = await (await api("POST", "/api/propagate", { direction }, "json")).json();
  say(`propagating ${direction}`, true);
  showJob(status);
  poll();
}

function showJob(job) {
  document.body.dataset.job = job.state;
  $("progress").value = job.total ? job.done / job.total : 0;
  $("cancel").disabled = job.state !== "running";
  for (const d of ["forward", "backward", "both"]) $(`propagate-${d}`).disabled = job.state === "running";
  const seconds = job.seconds ? ` in ${job.seconds.toFixed(1)} s` : "";
  $("job-status").textContent = job.state === "running" ? `${job.direction}: ${job.done} / ${job.total} steps`
    : `${job.state}${job.direction ? " (" + job.direction + ")" : ""}${seconds} ${job.message || ""}`;
}

function poll() {
  if (S.polling) return;
  S.polling = setInterval(guarded(async () => {
    const job = await (await api("GET", "/api/propagate")).json();
    showJob(job);
    const running = job.state === "running";
    if (job.frames_written !== S.written || !running) {
      S.written = job.frames_written;
      await refreshState();
      if (!S.drawing && S.pending === 0 && !S.polygon.length) await showFrame(S.target);
    }
    if (!running) {
      clearInterval(S.polling);
      S.polling = null;
      S.written = -1;
      say(job.state === "done" ? "propagation done" : job.message, job.state === "done");
    }
  }), 250);
}

async function exportAs(kind) {
  say(`exporting ${kind}...`, true);
  const body = { kind };
  if (kind === "training-set" && $("set-name").value.trim()) body.name = $("set-name").value.trim();
  const answer = await (await api("POST", "/api/export", body, "json")).json();
  $("export-status").textContent = `${kind}: ${answer.path}`;
  if (kind === "overlay") {
    const link = document.createElement("a");
    link.href = "/api/exports/overlay.mp4";
    link.textContent = " (play)";
    link.target = "_blank";
    $("export-status").append(link);
  }
  say(`exported ${kind}`, true);
}

// ------------------------------------------------------------------------------------------------ keys
function onKey(event) {
  if (event.target.tagName === "INPUT" && event.target.type === "text") return;
  const k = event.key;
  const n = S.project.frames.length;
  if (k === "ArrowLeft" || k === "ArrowRight") {
    const step = (event.shiftKey ? 10 : 1) * (k === "ArrowLeft" ? -1 : 1);
    guarded(showFrame)(Math.max(0, Math.min(n - 1, S.target + step)));
  } else if (k === " ") guarded(play)();
  else if (k === "b") setTool("brush");
  else if (k === "e") setTool("eraser");
  else if (k === "p") setTool("polygon");
  else if (k === "[" || k === "]") {
    const size = $("brush-size");
    size.value = Math.max(1, Number(size.value) + (k === "[" ? -2 : 2));
    size.dispatchEvent(new Event("input"));
  } else if (k >= "1" && k <= "9") {
    const obj = S.project.objects[Number(k) - 1];
    if (obj) selectObject(obj.id);
  } else if (k === "+" || k === "=") setZoom(S.zoom * 1.25);
  else if (k === "-") setZoom(S.zoom / 1.25);
  else if (k === "o") { $("show-overlay").checked = !$("show-overlay").checked; S.overlay = $("show-overlay").checked; renderOverlay(); }
  else if (k === "Enter") closePolygon();
  else if (k === "z" && (event.ctrlKey || event.metaKey)) undo();
  else if (k === "Escape") { S.polygon = []; renderDraw(); }
  else return;
  event.preventDefault();
}

// ------------------------------------------------------------------------------------------------ start
async function start() {
  await refreshState();
  const p = S.project;
  [H, W] = p.size;
  for (const id of ["frame-canvas", "overlay", "draw-canvas"]) { $(id).width = W; $(id).height = H; }
  $("title").textContent = `${p.video} (${p.frames.length} frames, ${H}x${W}) — project ${p.project}`;
  $("slider").max = p.frames.length - 1;
  $("opacity").value = Math.round(p.settings.opacity * 100);
  $("brush-size").value = p.settings.brush;
  $("brush-value").textContent = p.settings.brush;
  const wrap = $("stage-wrap");
  setZoom(Math.min((wrap.clientWidth - 20) / W, (wrap.clientHeight - 20) / H, 16));
  setupDrawing();
  $("slider").addEventListener("input", () => guarded(showFrame)(Number($("slider").value)));
  $("prev").onclick = () => guarded(showFrame)(S.target - 1);
  $("next").onclick = () => guarded(showFrame)(S.target + 1);
  $("play").onclick = () => guarded(play)();
  $("strip").onclick = (e) => {
    const rect = $("strip").getBoundingClientRect();
    guarded(showFrame)(Math.floor(((e.clientX - rect.left) / rect.width) * p.frames.length));
  };
  for (const tool of ["brush", "eraser", "polygon"]) $(`tool-${tool}`).onchange = () => setTool(tool);
  $("brush-size").addEventListener("input", () => {
    $("brush-value").textContent = $("brush-size").value;
    saveSettings({ brush: Number($("brush-size").value) });
  });
  $("opacity").addEventListener("input", () => {
    renderOverlay();
    saveSettings({ opacity: Number($("opacity").value) / 100 });
  });
  $("show-overlay").onchange = () => { S.overlay = $("show-overlay").checked; renderOverlay(); };
  $("zoom-in").onclick = () => setZoom(S.zoom * 1.25);
  $("zoom-out").onclick = () => setZoom(S.zoom / 1.25);
  $("add-object").onclick = guarded(async () => {
    const before = new Set(S.project.objects.map((o) => o.id));
    applyState(await (await api("POST", "/api/objects", {}, "json")).json());
    const added = S.project.objects.find((o) => !before.has(o.id));
    if (added) selectObject(added.id);
  });
  $("load-mask").onchange = guarded(async () => {
    const file = $("load-mask").files[0];
    $("load-mask").value = "";
    if (!file) return;
    const answer = await api("PUT", `/api/annotations/${S.frame}`, file, "image/png");
    applyState(await answer.json());
    await showFrame(S.target);
    say(`loaded ${file.name} onto frame ${S.project.frames[S.frame]}`, true);
  });
  $("clear-annotation").onclick = guarded(async () => {
    applyState(await (await api("DELETE", `/api/annotations/${S.frame}`)).json());
    await showFrame(S.target);
  });
  for (const d of ["forward", "backward", "both"]) $(`propagate-${d}`).onclick = guarded(() => propagate(d));
  $("cancel").onclick = guarded(async () => showJob(await (await api("POST", "/api/propagate/cancel", {}, "json")).json()));
  for (const kind of ["palette", "per-object", "overlay", "training-set"]) {
    $(`export-${kind}`).onclick = guarded(() => exportAs(kind));
  }
  document.addEventListener("keydown", onKey);
  showJob(p.job);
  if (p.job.state === "running") poll();
  await showFrame(Math.min(p.settings.frame, p.frames.length - 1));
}

guarded(start)();
