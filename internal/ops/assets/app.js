// app.js: the Cairn ops console. Everything it shows comes from /ops/api/*
// and the admin routes /v1/admin/*, with the admin token from this tab's
// session storage as a bearer header (never in a URL).
"use strict";

const TOKEN_KEY = "cairn.adminToken";
const $ = (id) => document.getElementById(id);
const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  hunts: [], hunt: "",
  view: null,            // {lon, lat, k}: centre and pixels per degree of longitude
  map: null,             // the last /map answer
  flashes: [],           // {lat, lon, t, outcome}
  cursor: 0,             // claims feed cursor
  primed: false,         // the feed's first answer (history: listed, not flashed) came
  timers: [],
  mapSeq: 0,
};

// ---- HTTP ----

async function api(path, opts = {}) {
  const headers = Object.assign({ Authorization: "Bearer " + state.token }, opts.headers || {});
  const res = await fetch(path, Object.assign({}, opts, { headers, cache: "no-store" }));
  if (res.status === 401) { signOut("the admin token was refused"); throw new Error("unauthorized"); }
  const text = await res.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (e) { body = { detail: text }; }
  if (!res.ok) throw new Error((body && (body.detail || body.title)) || res.statusText);
  return body;
}

// ---- sign in ----

async function signIn(token) {
  state.token = token;
  const body = await api("/v1/admin/hunts");
  sessionStorage.setItem(TOKEN_KEY, token);
  $("signin-view").hidden = true;
  $("console-view").hidden = false;
  setHunts(body.hunts || []);
  start();
}

function signOut(why) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = "";
  for (const t of state.timers) clearInterval(t);
  state.timers = [];
  $("console-view").hidden = true;
  $("signin-view").hidden = false;
  $("signin-error").textContent = why || "";
}

$("signin-form").addEventListener("submit", (e) => {
  e.preventDefault();
  $("signin-error").textContent = "";
  signIn($("token").value.trim()).catch((err) => { if (err.message !== "unauthorized") $("signin-error").textContent = err.message; });
});
$("signout").addEventListener("click", () => signOut(""));

function setHunts(hunts, select) {
  state.hunts = hunts;
  const sel = $("hunt");
  const keep = select || state.hunt || (hunts.find((h) => h.id === "demo") || hunts[0] || {}).id || "";
  sel.replaceChildren(...hunts.map((h) => new Option(h.name ? h.id + " — " + h.name : h.id, h.id)));
  if (keep) sel.value = keep;
  if (sel.value !== state.hunt) pickHunt(sel.value);
}

$("hunt").addEventListener("change", (e) => pickHunt(e.target.value));

function pickHunt(id) {
  state.hunt = id;
  state.view = null; state.map = null; state.mapVersion++; state.cursor = 0; state.primed = false; state.flashes = [];
  $("feed").replaceChildren();
  const h = state.hunts.find((x) => x.id === id);
  $("hunt-times").textContent = h ? huntTimes(h) : "";
  if (id) fitHunt();
  drawMap();
}

function huntTimes(h) {
  const f = (t) => t ? new Date(t).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z").replace(/Z$/, " UTC") : null;
  return "opens " + (f(h.starts_at) || "any time") + ", closes " + (f(h.ends_at) || "never") + ", radius " + h.claim_radius_m + " m";
}

// ---- the map ----

const canvas = $("map");

function viewBox() {
  const w = canvas.clientWidth, h = canvas.clientHeight, v = state.view;
  const ky = v.k / Math.cos(v.lat * Math.PI / 180);
  return { s: v.lat - h / 2 / ky, n: v.lat + h / 2 / ky, w: v.lon - w / 2 / v.k, e: v.lon + w / 2 / v.k, ky };
}

function project(lat, lon) {
  const v = state.view, b = viewBox();
  return [(lon - b.w) * v.k, (b.n - lat) * b.ky];
}

async function fitHunt() {
  const hunt = state.hunt;
  try {
    let ans;
    for (let i = 0; i < 60; i++) {         // the hunt's index may still be building
      ans = await api("/ops/api/hunts/" + encodeURIComponent(hunt) + "/map");
      if (!ans.building) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    if (hunt !== state.hunt) return;
    const b = ans.hunt_bounds || [48.80, 2.25, 48.92, 2.45];
    const lat = (b[0] + b[2]) / 2, lon = (b[1] + b[3]) / 2;
    const w = canvas.clientWidth || 800, h = canvas.clientHeight || 500;
    const cos = Math.cos(lat * Math.PI / 180);
    const k = Math.min(w / Math.max(b[3] - b[1], 1e-4), (h * cos) / Math.max(b[2] - b[0], 1e-4)) * 0.9;
    state.view = { lat, lon, k: Math.min(Math.max(k, 0.5), 5e7) };
    loadMap();
  } catch (err) { $("map-mode").textContent = err.message; }
}

let mapTimer = null;
function scheduleMap() { clearTimeout(mapTimer); mapTimer = setTimeout(loadMap, 150); }

async function loadMap(rebuild) {
  if (!state.view || !state.hunt) return;
  const b = viewBox();
  const clamp = (x, lo, hi) => Math.min(hi, Math.max(lo, x));
  const box = [clamp(b.s, -90, 89.999), clamp(b.w, -180, 179.999), clamp(b.n, -89.999, 90), clamp(b.e, -179.999, 180)];
  const seq = ++state.mapSeq;
  const q = "bbox=" + box.map((x) => x.toFixed(6)).join(",") + "&width_px=" + Math.round(canvas.clientWidth) +
    "&height_px=" + Math.round(canvas.clientHeight) + (rebuild ? "&rebuild=1" : "");
  try {
    const ans = await api("/ops/api/hunts/" + encodeURIComponent(state.hunt) + "/map?" + q);
    if (seq !== state.mapSeq) return;
    if (ans.building) { $("map-mode").textContent = "indexing the hunt…"; setTimeout(loadMap, 500); return; }
    if (ans.mode === "points") ans.byId = new Map(ans.points.map((p) => [p.id, p]));
    state.map = ans;
    state.mapVersion++;
    const drawn = ans.mode === "points" ? ans.points.length : ans.in_view;
    $("drawn-count").textContent = drawn;
    $("map-mode").textContent = ans.mode === "points"
      ? "each hotspot; " + ans.hunt_tickets_left + "/" + ans.hunt_tickets + " tickets left in the hunt"
      : ans.cells.length + " cells (" + ans.cell_bits + "-bit geohash); " + ans.hunt_tickets_left + "/" + ans.hunt_tickets + " tickets left";
    drawMap();
  } catch (err) { $("map-mode").textContent = err.message; }
}

function colourOf(left, tickets) {
  if (!(tickets > 0)) return "hsl(210,10%,45%)";
  const r = Math.max(0, Math.min(1, left / tickets));
  return "hsl(" + Math.round(130 * r) + ",75%," + (left === 0 ? 40 : 48) + "%)";
}

function niceStep(span) {
  const raw = span / 8, p = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

// The map is two layers: the base (graticule, cells or hotspots), drawn
// into an offscreen canvas only when the view or the data change, and the
// flashes, drawn over a copy of it on every animation frame.
let base = { canvas: document.createElement("canvas"), key: "" };
state.mapVersion = 0;

function drawMap() {
  const { ctx, w, h } = fitCanvas(canvas);
  if (!state.view) { ctx.fillStyle = "#0b1016"; ctx.fillRect(0, 0, w, h); return; }
  const v = state.view;
  const key = [v.lon, v.lat, v.k, canvas.width, canvas.height, state.mapVersion].join();
  if (base.key !== key) {
    base.canvas.width = canvas.width; base.canvas.height = canvas.height;
    const bctx = base.canvas.getContext("2d");
    const dpr = window.devicePixelRatio || 1;
    bctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    drawBase(bctx, w, h);
    base.key = key;
  }
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.drawImage(base.canvas, 0, 0);
  const dpr = window.devicePixelRatio || 1;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  drawFlashes(ctx);
}

function drawBase(ctx, w, h) {
  ctx.fillStyle = "#0b1016"; ctx.fillRect(0, 0, w, h);
  const b = viewBox();
  // a graticule for orientation, labelled in degrees
  ctx.strokeStyle = "#1c2733"; ctx.fillStyle = "#4a5866"; ctx.lineWidth = 1; ctx.font = "10px system-ui, sans-serif";
  const sx = niceStep(b.e - b.w), sy = niceStep(b.n - b.s);
  const dec = (s) => Math.max(0, -Math.floor(Math.log10(s)));
  for (let lon = Math.ceil(b.w / sx) * sx; lon <= b.e; lon += sx) {
    const [x] = project(b.n, lon);
    ctx.beginPath(); ctx.moveTo(Math.round(x) + 0.5, 0); ctx.lineTo(Math.round(x) + 0.5, h); ctx.stroke();
    ctx.fillText(lon.toFixed(dec(sx)) + "°", x + 2, h - 4);
  }
  for (let lat = Math.ceil(b.s / sy) * sy; lat <= b.n; lat += sy) {
    const [, y] = project(lat, b.w);
    ctx.beginPath(); ctx.moveTo(0, Math.round(y) + 0.5); ctx.lineTo(w, Math.round(y) + 0.5); ctx.stroke();
    ctx.fillText(lat.toFixed(dec(sy)) + "°", 2, y - 2);
  }
  const m = state.map;
  if (m && m.mode === "cells") {
    let nmax = 1;
    for (const c of m.cells) nmax = Math.max(nmax, c[4]);
    for (const c of m.cells) {
      const [x0, y0] = project(c[2], c[1]), [x1, y1] = project(c[0], c[3]);
      ctx.globalAlpha = 0.35 + 0.6 * Math.sqrt(c[4] / nmax);
      ctx.fillStyle = colourOf(c[6], c[5]);
      ctx.fillRect(x0 + 0.5, y0 + 0.5, Math.max(1, x1 - x0 - 1), Math.max(1, y1 - y0 - 1));
    }
    ctx.globalAlpha = 1;
  } else if (m && m.mode === "points") {
    for (const p of m.points) {
      const [x, y] = project(p.lat, p.lon);
      ctx.beginPath(); ctx.arc(x, y, 4, 0, 2 * Math.PI);
      ctx.fillStyle = colourOf(p.tickets_left, p.tickets); ctx.fill();
    }
  }
}

// drawFlashes: claims flash for 1.5 s where they were made.
function drawFlashes(ctx) {
  const now = performance.now();
  state.flashes = state.flashes.filter((f) => now - f.t < 1500);
  for (const f of state.flashes) {
    const a = (now - f.t) / 1500, [x, y] = project(f.lat, f.lon);
    ctx.beginPath(); ctx.arc(x, y, 4 + 16 * a, 0, 2 * Math.PI);
    ctx.strokeStyle = f.outcome === "granted" ? "rgba(255,255,255," + (1 - a) + ")" : "rgba(255,112,112," + (1 - a) + ")";
    ctx.lineWidth = 2; ctx.stroke();
  }
  if (state.flashes.length) animate();
}

// animate redraws the map for the flashes at most 4 times a second: a
// busy hunt flashes all the time, and the page should not spin a core.
let animating = false;
function animate() {
  if (animating) return;
  animating = true;
  setTimeout(() => { animating = false; drawMap(); }, 250);
}

canvas.addEventListener("wheel", (e) => {
  if (!state.view) return;
  e.preventDefault();
  zoomAt(e.offsetX, e.offsetY, e.deltaY < 0 ? 1.25 : 0.8);
}, { passive: false });

function zoomAt(px, py, f) {
  const v = state.view, b = viewBox();
  const lon = b.w + px / v.k, lat = b.n - py / b.ky;
  v.k = Math.min(Math.max(v.k * f, 0.5), 5e7);
  const b2 = viewBox();
  v.lon += lon - (b2.w + px / v.k);
  v.lat += lat - (b2.n - py / b2.ky);
  v.lat = Math.max(-85, Math.min(85, v.lat));
  drawMap(); scheduleMap();
}

let drag = null;
canvas.addEventListener("mousedown", (e) => { drag = { x: e.clientX, y: e.clientY }; });
window.addEventListener("mouseup", () => { drag = null; });
window.addEventListener("mousemove", (e) => {
  if (!drag || !state.view) return;
  const b = viewBox();
  state.view.lon -= (e.clientX - drag.x) / state.view.k;
  state.view.lat = Math.max(-85, Math.min(85, state.view.lat + (e.clientY - drag.y) / b.ky));
  drag = { x: e.clientX, y: e.clientY };
  drawMap(); scheduleMap();
});
$("zoom-in").addEventListener("click", () => state.view && zoomAt(canvas.clientWidth / 2, canvas.clientHeight / 2, 1.5));
$("zoom-out").addEventListener("click", () => state.view && zoomAt(canvas.clientWidth / 2, canvas.clientHeight / 2, 1 / 1.5));
$("zoom-fit").addEventListener("click", () => fitHunt());
window.addEventListener("resize", () => { drawMap(); scheduleMap(); });

// ---- the claims feed ----

async function pollClaims() {
  if (!state.hunt) return;
  const hunt = state.hunt;
  const ans = await api("/ops/api/hunts/" + encodeURIComponent(hunt) + "/claims?after=" + state.cursor);
  if (hunt !== state.hunt) return;
  const first = !state.primed;
  state.primed = true;
  state.cursor = ans.cursor;
  if (!ans.claims.length) return;
  const feed = $("feed"), now = performance.now();
  const items = [];
  const byId = state.map && state.map.mode === "points" ? state.map.byId : null;
  ans.claims.forEach((c, i) => {
    if (i >= ans.claims.length - 60) { // the newest 60 are listed
      const li = document.createElement("li");
      li.dataset.hotspot = c.hotspot;
      li.dataset.outcome = c.outcome;
      const t = new Date(c.at).toISOString().slice(11, 23);
      const o = document.createElement("span"); o.className = "o-" + c.outcome; o.textContent = c.outcome;
      li.append(t + " " + c.player + " @ " + c.hotspot + " ", o, " left " + c.tickets_left);
      if (!first) li.className = "new";
      items.unshift(li);
    }
    if (!first) {
      if (state.flashes.length >= 200) state.flashes.shift(); // the newest 200 flash
      state.flashes.push({ lat: c.lat, lon: c.lon, t: now, outcome: c.outcome });
      canvas.dataset.flashes = String(Number(canvas.dataset.flashes) + 1);
      canvas.dataset.lastFlash = c.hotspot;
    }
    const p = byId && byId.get(c.hotspot);
    if (p && p.tickets_left !== c.tickets_left) { p.tickets_left = c.tickets_left; state.mapVersion++; }
  });
  feed.prepend(...items);
  while (feed.children.length > 60) feed.lastChild.remove();
  setTimeout(() => items.forEach((li) => li.classList.remove("new")), 1500);
  if (!first) animate();
}

// ---- charts ----

const outcomeColours = { granted: "#6fe39a", already_claimed: "#f0c060", sold_out: "#ff7070", too_far: "#c49cff", not_open: "#8fa6ff", implausible_movement: "#ff9ad5" };

async function pollStats() {
  const ans = await api("/ops/api/stats?seconds=300");
  const now = Date.now(), span = 300000;
  const ts = ans.samples.map((s) => Date.parse(s.at));
  const claims = ans.outcomes.map((name, i) => ({
    name, color: outcomeColours[name] || "#ccc",
    points: ans.samples.map((s, j) => [ts[j], s.outcomes[i]]),
    last: ans.samples.length ? ans.samples[ans.samples.length - 1].outcomes[i] : null,
  })).filter((s) => s.name === "granted" || s.points.some(([, v]) => v > 0));
  lineChart($("chart-claims"), claims, { now, spanMs: span, empty: "no claims in the last 5 minutes" });
  legend($("legend-claims"), claims.map((s) => Object.assign({}, s, { last: s.last != null ? s.last + "/s" : null })));
  const lat = [
    { name: "p50", color: "#4fb3ff", points: ans.samples.map((s, j) => [ts[j], s.p50_ms ?? null]) },
    { name: "p99", color: "#ff9d4f", points: ans.samples.map((s, j) => [ts[j], s.p99_ms ?? null]) },
  ];
  for (const s of lat) { const p = s.points.filter(([, v]) => v != null); s.last = p.length ? p[p.length - 1][1].toFixed(2) + " ms" : null; }
  lineChart($("chart-latency"), lat, { now, spanMs: span, empty: "no claims answered in the last 5 minutes" });
  legend($("legend-latency"), lat);
  const last = ans.samples[ans.samples.length - 1];
  $("feed-rate").textContent = last ? last.outcomes.reduce((a, b) => a + b, 0) + " claims/s" : "";
}

// ---- leaderboard and partitions ----

async function pollBoard() {
  if (!state.hunt) return;
  const ans = await api("/ops/api/hunts/" + encodeURIComponent(state.hunt) + "/leaderboard?limit=10");
  $("board").tBodies[0].replaceChildren(...ans.entries.map((e) => {
    const tr = document.createElement("tr");
    for (const v of [e.rank, e.player, e.score]) { const td = document.createElement("td"); td.textContent = v; tr.append(td); }
    return tr;
  }));
  const age = ans.last_updated_epoch ? ((Date.now() - ans.last_updated_epoch) / 1000).toFixed(1) + " s ago" : "no grant yet";
  $("board-staleness").textContent = "staleness " + ans.staleness_ms + " ms; last event " + age;
}

async function pollConsistency() {
  const ans = await api("/ops/api/consistency");
  let lagMax = 0, depth = 0;
  $("heat").replaceChildren(...ans.partitions.map((p) => {
    const d = document.createElement("div");
    const r = Math.min(1, p.lag_ms / 200);
    d.style.background = "hsl(" + Math.round(130 * (1 - r)) + ",65%," + (p.seq ? 50 : 25) + "%)";
    d.textContent = p.inbox_depth || "";
    d.title = "partition " + p.partition + ": seq " + p.seq + ", projection at " + p.board_seq + " (" + p.lag_events +
      " events, " + p.lag_ms + " ms behind), inbox " + p.inbox_depth;
    lagMax = Math.max(lagMax, p.lag_ms); depth += p.inbox_depth;
    return d;
  }));
  $("heat-summary").textContent = ans.partitions.length + " partitions; worst lag " + lagMax + " ms; " + depth + " waiting";
}

// ---- hunt admin ----

const toInput = (t) => t ? new Date(t).toISOString().slice(0, 19) : "";
const fromInput = (v) => v ? new Date(v + "Z").toISOString() : undefined;

$("hf-load").addEventListener("click", () => {
  const h = state.hunts.find((x) => x.id === state.hunt);
  if (!h) return;
  $("hf-id").value = h.id; $("hf-name").value = h.name || "";
  $("hf-starts").value = toInput(h.starts_at); $("hf-ends").value = toInput(h.ends_at);
  $("hf-radius").value = h.claim_radius_m;
});

$("hunt-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const id = $("hf-id").value.trim();
  const old = state.hunts.find((x) => x.id === id);
  const body = { name: $("hf-name").value, claim_radius_m: Number($("hf-radius").value) || 50 };
  const s = fromInput($("hf-starts").value), en = fromInput($("hf-ends").value);
  if (s) body.starts_at = s;
  if (en) body.ends_at = en;
  if (old) body.max_speed_mps = old.max_speed_mps;
  try {
    await api("/v1/admin/hunts/" + encodeURIComponent(id), { method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    $("hunt-form-status").textContent = (old ? "updated " : "created ") + id;
    const list = await api("/v1/admin/hunts");
    state.hunt = "";
    setHunts(list.hunts || [], id);
  } catch (err) { $("hunt-form-status").textContent = "refused: " + err.message; }
});

// CSV with a header row → NDJSON, numbers as numbers.
function csvToNDJSON(text) {
  const rows = text.split(/\r?\n/).filter((l) => l.trim() !== "");
  if (!rows.length) return "";
  const split = (line) => {
    const out = []; let cur = "", q = false;
    for (let i = 0; i < line.length; i++) {
      const ch = line[i];
      if (q) { if (ch === '"' && line[i + 1] === '"') { cur += '"'; i++; } else if (ch === '"') q = false; else cur += ch; }
      else if (ch === '"') q = true; else if (ch === ",") { out.push(cur); cur = ""; } else cur += ch;
    }
    out.push(cur); return out.map((s) => s.trim());
  };
  const head = split(rows[0]);
  const numeric = new Set(["lat", "lon", "tickets", "reward", "points"]);
  return rows.slice(1).map((line) => {
    const cells = split(line), o = {};
    head.forEach((k, i) => { if (cells[i] !== undefined && cells[i] !== "") o[k] = numeric.has(k) ? Number(cells[i]) : cells[i]; });
    return JSON.stringify(o);
  }).join("\n") + "\n";
}

function setProgress(pct, text) {
  $("import-progress").value = pct;
  $("import-pct").textContent = Math.round(pct) + " %";
  if (text !== undefined) $("import-status").textContent = text;
}

async function importFile(file) {
  if (!state.hunt) { setProgress(0, "pick or create a hunt first"); return; }
  const hunt = state.hunt;
  let text = await file.text();
  const first = text.trimStart()[0];
  if (file.name.toLowerCase().endsWith(".csv") || (first !== "{" && first !== "[")) text = csvToNDJSON(text);
  const blob = new Blob([text], { type: first === "[" ? "application/json" : "application/x-ndjson" });
  setProgress(0, "uploading " + file.name + " (" + blob.size + " bytes)…");
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/v1/admin/hunts/" + encodeURIComponent(hunt) + "/hotspots");
  xhr.setRequestHeader("Authorization", "Bearer " + state.token);
  xhr.setRequestHeader("Content-Type", blob.type);
  // The upload fills the bar to 95 %; the server's answer (every hotspot durable) the last 5 %.
  xhr.upload.onprogress = (e) => { if (e.lengthComputable) setProgress(95 * e.loaded / e.total); };
  xhr.upload.onload = () => setProgress(95, "uploaded; the server is importing…");
  xhr.onerror = () => setProgress(0, "the upload failed");
  xhr.onload = () => {
    let body = {};
    try { body = JSON.parse(xhr.responseText); } catch (e) { /* keep {} */ }
    if (xhr.status === 200) {
      setProgress(100, "imported " + body.imported + " hotspots into " + hunt);
      if (hunt === state.hunt) loadMap(true);
    } else {
      setProgress(0, "refused (" + xhr.status + "): " + (body.detail || xhr.statusText) +
        (body.imported !== undefined ? " — " + body.imported + " imported before it" : ""));
    }
  };
  xhr.send(blob);
}

const drop = $("import-drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault(); drop.classList.remove("over");
  if (e.dataTransfer.files.length) importFile(e.dataTransfer.files[0]);
});
$("import-file").addEventListener("change", (e) => { if (e.target.files.length) importFile(e.target.files[0]); e.target.value = ""; });

// ---- the loop ----

function every(ms, fn) {
  const run = () => fn().catch(() => { /* shown by the next success; 401 signs out */ });
  run();
  state.timers.push(setInterval(run, ms));
}

function start() {
  every(500, pollClaims);
  every(2000, pollStats);
  every(2000, pollBoard);
  every(2000, pollConsistency);
  every(3000, async () => { if (!drag) await loadMap(); });
  state.timers.push(setInterval(() => api("/v1/admin/hunts").then((b) => setHunts(b.hunts || [])).catch(() => {}), 10000));
  state.timers.push(setInterval(() => { $("clock").textContent = new Date().toISOString().slice(11, 19) + " UTC"; }, 1000));
}

if (state.token) signIn(state.token).catch(() => signOut(""));
