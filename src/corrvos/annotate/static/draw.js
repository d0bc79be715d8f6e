// corrvos annotate: drawing on the current frame's mask (brush, eraser, polygon) and the overlay. Loaded before
// app.js, whose state (S, W, H, the canvases) and helpers (say, saveAnnotation) these functions use when called.
"use strict";
// ------------------------------------------------------------------------------------------------ drawing
function colourOf(id) {
  const obj = S.project.objects.find((o) => o.id === id);
  if (!obj) return id === 255 ? [128, 128, 128] : null;
  const c = obj.colour;
  return [parseInt(c.slice(1, 3), 16), parseInt(c.slice(3, 5), 16), parseInt(c.slice(5, 7), 16)];
}

function renderOverlay() {
  const image = overlayCtx.createImageData(W, H);
  if (S.overlay) {
    const alpha = Math.round(Number($("opacity").value) * 2.55);
    const lut = new Array(256).fill(null);
    for (let id = 1; id < 256; id++) lut[id] = colourOf(id);
    const d = image.data;
    for (let p = 0; p < W * H; p++) {
      const c = lut[S.label[p]];
      if (c) { d[4 * p] = c[0]; d[4 * p + 1] = c[1]; d[4 * p + 2] = c[2]; d[4 * p + 3] = alpha; }
    }
  }
  overlayCtx.putImageData(image, 0, 0);
}

let overlayQueued = false;
function queueOverlay() {
  if (overlayQueued) return;
  overlayQueued = true;
  requestAnimationFrame(() => { overlayQueued = false; renderOverlay(); });
}

function renderDraw() {
  drawCtx.clearRect(0, 0, W, H);
  if (S.polygon.length) {
    const c = colourOf(S.selected) || [255, 255, 255];
    drawCtx.strokeStyle = `rgb(${c[0]},${c[1]},${c[2]})`;
    drawCtx.lineWidth = 1 / S.zoom;
    drawCtx.beginPath();
    S.polygon.forEach(([x, y], k) => (k ? drawCtx.lineTo(x, y) : drawCtx.moveTo(x, y)));
    drawCtx.stroke();
    for (const [x, y] of S.polygon) drawCtx.fillRect(x - 1 / S.zoom, y - 1 / S.zoom, 2 / S.zoom, 2 / S.zoom);
  }
}

function stamp(x, y, value) {
  const r = Number($("brush-size").value) / 2;
  for (let yy = Math.floor(y - r); yy <= Math.ceil(y + r); yy++) {
    if (yy < 0 || yy >= H) continue;
    for (let xx = Math.floor(x - r); xx <= Math.ceil(x + r); xx++) {
      if (xx < 0 || xx >= W) continue;
      const dx = xx + 0.5 - x, dy = yy + 0.5 - y;
      if (dx * dx + dy * dy <= r * r) S.label[yy * W + xx] = value;
    }
  }
}

function strokeTo(x, y, value) {
  const [x0, y0] = S.last || [x, y];
  const steps = Math.max(1, Math.ceil(Math.hypot(x - x0, y - y0)));
  for (let k = 1; k <= steps; k++) stamp(x0 + ((x - x0) * k) / steps, y0 + ((y - y0) * k) / steps, value);
  S.last = [x, y];
  queueOverlay();
}

function fillPolygon(points, value) {
  const ys = points.map((p) => p[1]), xs = points.map((p) => p[0]);
  const top = Math.max(0, Math.floor(Math.min(...ys))), bottom = Math.min(H - 1, Math.ceil(Math.max(...ys)));
  const left = Math.max(0, Math.floor(Math.min(...xs))), right = Math.min(W - 1, Math.ceil(Math.max(...xs)));
  for (let y = top; y <= bottom; y++) {
    for (let x = left; x <= right; x++) {
      const px = x + 0.5, py = y + 0.5;
      let inside = false;
      for (let i = 0, j = points.length - 1; i < points.length; j = i++) {
        const [xi, yi] = points[i], [xj, yj] = points[j];
        if ((yi > py) !== (yj > py) && px < ((xj - xi) * (py - yi)) / (yj - yi) + xi) inside = !inside;
      }
      if (inside) S.label[y * W + x] = value;
    }
  }
}

function needObject() {
  if (S.selected !== null && S.project.objects.some((o) => o.id === S.selected)) return true;
  say("add or select an object first");
  return false;
}

async function saveAnnotation() {
  const frame = S.frame, copy = S.label.slice();
  S.pending++;
  document.body.dataset.saving = String(S.pending);
  try {
    const answer = await api("PUT", `/api/annotations/${frame}`, copy, "application/octet-stream");
    applyState(await answer.json());
    if (frame === S.frame) {
      S.kind = "annotation";
      $("frame-kind").textContent = "annotated frame";
    }
  } catch (e) {
    say(e.message);
    if (frame === S.frame) await showFrame(frame); // the server changed nothing: show what it has
  } finally {
    S.pending--;
    document.body.dataset.saving = String(S.pending);
  }
}

function imagePoint(event) {
  const rect = $("draw-canvas").getBoundingClientRect();
  return [(event.clientX - rect.left) / S.zoom, (event.clientY - rect.top) / S.zoom];
}

function closePolygon() {
  if (S.polygon.length >= 3 && needObject()) {
    S.undo.push(S.label.slice());
    fillPolygon(S.polygon, S.selected);
    S.polygon = [];
    renderDraw();
    renderOverlay();
    saveAnnotation();
  }
}

function setupDrawing() {
  const canvas = $("draw-canvas");
  canvas.addEventListener("pointerdown", (event) => {
    canvas.focus();
    const [x, y] = imagePoint(event);
    if (S.tool === "polygon") {
      const first = S.polygon[0];
      if (first && S.polygon.length >= 3 && Math.hypot(x - first[0], y - first[1]) * S.zoom < 6) closePolygon();
      else { S.polygon.push([x, y]); renderDraw(); }
      return;
    }
    if (S.tool === "brush" && !needObject()) return;
    S.undo.push(S.label.slice()); // the mask before this stroke
    S.drawing = true;
    S.last = null;
    canvas.setPointerCapture(event.pointerId);
    strokeTo(x, y, S.tool === "eraser" ? 0 : S.selected);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!S.drawing) return;
    const [x, y] = imagePoint(event);
    strokeTo(x, y, S.tool === "eraser" ? 0 : S.selected);
  });
  const finish = () => {
    if (!S.drawing) return;
    S.drawing = false;
    S.last = null;
    saveAnnotation();
  };
  canvas.addEventListener("pointerup", finish);
  canvas.addEventListener("pointercancel", finish);
  canvas.addEventListener("dblclick", closePolygon);
}

function undo() {
  if (!S.undo.length || S.drawing) return say("nothing to undo on this frame");
  S.label = S.undo.pop();
  renderOverlay();
  saveAnnotation();
}
