// chart.js: the console's own line chart on a canvas, about a hundred lines,
// so the console vendors no library (nothing to keep up to date, nothing
// loaded from elsewhere). lineChart(canvas, series, opts) draws series
// [{name, color, points: [[tMillis, value|null], ...]}] over opts.spanMs
// ending at opts.now, with a y axis from 0 to a rounded maximum.
"use strict";

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function fitCanvas(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return { ctx, w, h };
}

function lineChart(canvas, series, opts) {
  const { ctx, w, h } = fitCanvas(canvas);
  const left = 44, right = 8, top = 8, bottom = 18;
  const pw = w - left - right, ph = h - top - bottom;
  ctx.clearRect(0, 0, w, h);
  let vmax = 0;
  for (const s of series) for (const [, v] of s.points) if (v != null && v > vmax) vmax = v;
  const ymax = niceMax(vmax);
  const t1 = opts.now, t0 = t1 - opts.spanMs;
  const x = (t) => left + ((t - t0) / opts.spanMs) * pw;
  const y = (v) => top + ph - (v / ymax) * ph;

  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#7f8b99";
  ctx.strokeStyle = "#2a3542";
  ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const v = (ymax * i) / 4, yy = Math.round(y(v)) + 0.5;
    ctx.beginPath(); ctx.moveTo(left, yy); ctx.lineTo(w - right, yy); ctx.stroke();
    const label = v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
    ctx.textAlign = "right"; ctx.fillText(label, left - 4, yy + 4);
  }
  ctx.textAlign = "center";
  for (let m = 0; m * 60000 <= opts.spanMs; m++) {
    const t = t1 - m * 60000, xx = x(t);
    ctx.fillText(m === 0 ? "now" : "-" + m + "m", xx, h - 4);
  }
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 1.6;
    ctx.beginPath();
    let pen = false;
    for (const [t, v] of s.points) {
      if (t < t0 || v == null) { pen = false; continue; }
      if (pen) ctx.lineTo(x(t), y(v)); else ctx.moveTo(x(t), y(v));
      pen = true;
    }
    ctx.stroke();
    // a sample with no neighbour draws no line: mark it with a dot
    ctx.fillStyle = s.color;
    s.points.forEach(([t, v], i) => {
      if (t < t0 || v == null) return;
      const prev = s.points[i - 1], next = s.points[i + 1];
      if ((!prev || prev[1] == null) && (!next || next[1] == null)) {
        ctx.beginPath(); ctx.arc(x(t), y(v), 2.5, 0, 2 * Math.PI); ctx.fill();
      }
    });
  }
  if (vmax === 0) {
    ctx.fillStyle = "#7f8b99"; ctx.textAlign = "center";
    ctx.fillText(opts.empty || "no data yet", left + pw / 2, top + ph / 2);
  }
}

function legend(el, series) {
  el.replaceChildren(...series.map((s) => {
    const span = document.createElement("span");
    const sw = document.createElement("span");
    sw.className = "sw"; sw.style.background = s.color;
    span.append(sw, s.name + (s.last != null ? " " + s.last : ""));
    return span;
  }));
}
