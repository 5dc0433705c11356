// The invigilator's live hall: loads the hall over HTTP, then applies small Socket.IO events.
// Thumbnails are fetched by id over HTTP (cached); images never travel over the socket.
import { fetchThumbnails, jsonApi } from "./fetch.js";

const root = document.getElementById("hall");
const examId = Number(root.dataset.exam);
const base = root.dataset.base;
const api = jsonApi(base);
const grid = document.getElementById("grid");
const feed = document.getElementById("feed");
const notice = document.getElementById("notice");
const detail = document.getElementById("detail");
// The page's words in the staff's language (dashboard/script_texts.py); {name} marks a value.
const T = JSON.parse(root.dataset.i18n);
const fmt = (text, values) => text.replace(/\{(\w+)\}/g, (all, name) => (name in values ? String(values[name]) : all));
const STATES = ["live", "stale", "offline", "left", "expected", "present_not_enrolled"];
const STATE_TEXT = Object.fromEntries(STATES.map((n) => [n, T["state_" + n]]));
const GLYPH = { stale: "…", offline: "✕", left: "⇥", present_not_enrolled: "?" };
// The observation labels of dashboard/labels.py; a label starts a line here, so with a capital.
const KIND_TEXT = Object.fromEntries(Object.entries(JSON.parse(root.dataset.labels))
  .map(([kind, text]) => [kind, text.charAt(0).toUpperCase() + text.slice(1)]));

const seats = new Map();      // key -> seat record
const tiles = new Map();      // key -> tile element
const observations = new Map(); // id -> item
let order = [];
let exam = null;
let skewMs = 0;
let attentionOnly = false;
let query = "";
let openSeat = null;
let seatMap = false;
// For bench/live.py: when a seat event named a new thumbnail, and when the tile finished loading it.
window.invigilTileEvents = [];
window.invigilTileLoads = [];

const keyOf = (s) => (s.r != null ? "r" + s.r : "a" + s.agent);
const esc = (text) => String(text == null ? "" : text).replace(/[&<>"']/g, (c) => "&#" + c.charCodeAt(0) + ";");
const hhmm = (iso) => (iso ? new Date(iso).toISOString().slice(11, 16) : "");
const hms = (iso) => (iso ? new Date(iso).toISOString().slice(11, 19) : "");

function say(text, bad = false) {
  notice.hidden = !text;
  notice.textContent = text || "";
  notice.classList.toggle("bad", bad);
}

// ---------------------------------------------------------------- tiles
function label(s) { return s.r == null ? T.laptop : (s.seat || s.no); }

function describe(s) {
  if (s.r == null) return fmt(T.unenrolled, { agent: s.agent, state: STATE_TEXT[s.state] });
  const parts = [fmt(T.seat, { seat: s.seat || "–" }), s.name, s.no, STATE_TEXT[s.state] || s.state];
  if (s.extra) parts.push(fmt(T.extra_min, { minutes: s.extra }));
  if (s.id_ok) parts.push(T.id_checked);
  if (s.obs) parts.push(fmt(s.obs > 1 ? T.open_many : T.open_one, { count: s.obs, kinds: s.kinds.join(", ") }));
  return parts.join(" · ");
}

// Thumbnails by id over HTTP, several per request: a browser opens six connections per server, and in a
// big hall dozens of screens change every second. A tile waiting for a thumbnail keeps only its newest.
const wantedThumbs = new Map(); // tile key -> "<session>.<capture>"
const MAX_BATCH = 48, MAX_INFLIGHT = 3;
let inflight = 0;

function wantThumb(key, s) {
  wantedThumbs.set(key, `${s.sid}.${s.thumb}`);
  pumpThumbs();
}

function pumpThumbs() {
  while (inflight < MAX_INFLIGHT && wantedThumbs.size) {
    const batch = [...wantedThumbs.entries()].slice(0, MAX_BATCH);
    for (const [key] of batch) wantedThumbs.delete(key);
    inflight++;
    fetchThumbs(batch).catch(() => {}).finally(() => { inflight--; pumpThumbs(); });
  }
}

async function fetchThumbs(batch) {
  const images = await fetchThumbnails(base, examId, batch.map(([, id]) => id));
  for (const [key, id] of batch) {
    const el = tiles.get(key);
    const blob = images.get(id);
    if (!el || !blob || el.dataset.want !== id) continue; // gone, or a newer thumbnail is wanted
    const img = el.querySelector("img");
    if (img.dataset.url) URL.revokeObjectURL(img.dataset.url);
    img.dataset.url = URL.createObjectURL(blob);
    img.dataset.capture = id.slice(id.indexOf(".") + 1);
    img.src = img.dataset.url;
  }
}

function makeTile(s) {
  const el = document.createElement("button");
  el.type = "button";
  el.className = "tile";
  el.setAttribute("role", "gridcell");
  el.tabIndex = -1;
  el.innerHTML = '<img alt="" decoding="async"><span class="glyph"></span><span class="badge" hidden></span><span class="idok" hidden>ID</span><span class="lbl"></span>';
  const img = el.querySelector("img");
  img.hidden = true;
  img.addEventListener("load", () => {
    img.hidden = false;
    const loads = window.invigilTileLoads;
    loads.push([img.dataset.capture, Date.now()]);
    if (loads.length > 20000) loads.splice(0, 10000);
  });
  el.addEventListener("click", () => openDetail(el.dataset.key));
  el.addEventListener("focus", () => { grid.dataset.focus = el.dataset.key; });
  return el;
}

// Writes only what changed: every DOM write can cost a style recalculation, and hundreds of tiles
// update every few seconds.
function put(node, key, value) {
  if (node[key] !== value) node[key] = value;
}

function paint(el, s) {
  const text = describe(s);
  el.dataset.key = keyOf(s);
  el.dataset.no = s.no || "";
  if (el.dataset.state !== s.state) el.dataset.state = s.state;
  put(el, "className", "tile s-" + s.state + (s.help ? " help" : ""));
  put(el, "title", text);
  if (el.getAttribute("aria-label") !== text) el.setAttribute("aria-label", text);
  put(el.querySelector(".lbl"), "textContent", label(s));
  put(el.querySelector(".glyph"), "textContent", GLYPH[s.state] || "");
  const badge = el.querySelector(".badge");
  put(badge, "hidden", !s.obs);
  put(badge, "textContent", s.help ? T.help_badge : String(s.obs || ""));
  put(badge, "className", s.help ? "badge help" : "badge");
  put(el.querySelector(".idok"), "hidden", !s.id_ok);
  const img = el.querySelector("img");
  if (s.thumb && s.sid) {
    const id = `${s.sid}.${s.thumb}`;
    if (el.dataset.want !== id) {
      el.dataset.want = id;
      wantThumb(keyOf(s), s);
    }
  } else if (el.dataset.want) {
    delete el.dataset.want;
    if (img.dataset.url) URL.revokeObjectURL(img.dataset.url);
    img.removeAttribute("src"); delete img.dataset.url; img.hidden = true;
  }
  if (seatMap && s.row != null && s.col != null) {
    put(el.style, "gridRow", String(s.row)); put(el.style, "gridColumn", String(s.col));
  }
  put(el, "hidden", !visible(s));
}

function needsAttention(s) { return s.state === "offline" || s.state === "stale" || s.obs > 0 || s.help; }
function visible(s) {
  if (attentionOnly && !needsAttention(s)) return false;
  if (query) {
    const hay = `${s.seat || ""} ${s.no || ""} ${s.name || ""} ${s.agent || ""}`.toLowerCase();
    if (!hay.includes(query)) return false;
  }
  return true;
}

function renderAll() {
  for (const el of tiles.values()) { const url = el.querySelector("img").dataset.url; if (url) URL.revokeObjectURL(url); }
  grid.textContent = "";
  tiles.clear();
  const frag = document.createDocumentFragment();
  for (const key of order) {
    const s = seats.get(key);
    const el = makeTile(s);
    paint(el, s);
    tiles.set(key, el);
    frag.appendChild(el);
  }
  grid.appendChild(frag);
  const first = grid.querySelector(".tile:not([hidden])");
  if (first) first.tabIndex = 0;
  layout();
}

function applySeat(s) {
  const key = keyOf(s);
  if (s.state === "gone") {
    seats.delete(key);
    const el = tiles.get(key);
    if (el) { const url = el.querySelector("img").dataset.url; if (url) URL.revokeObjectURL(url); el.remove(); tiles.delete(key); order = order.filter((k) => k !== key); layout(); }
    return;
  }
  const before = seats.get(key);
  if (s.thumb && (!before || before.thumb !== s.thumb)) {
    window.invigilTileEvents.push([s.thumb, Date.now()]);
    if (window.invigilTileEvents.length > 20000) window.invigilTileEvents.splice(0, 10000);
  }
  const merged = { ...(before || {}), ...s };
  seats.set(key, merged);
  let el = tiles.get(key);
  if (!el) {
    el = makeTile(merged);
    tiles.set(key, el);
    order.push(key);
    grid.appendChild(el);
    paint(el, merged);
    layout();
  } else {
    paint(el, merged);
  }
  if (openSeat === key) refreshDetailHeader(merged);
}

function refilter() {
  for (const [key, el] of tiles) el.hidden = !visible(seats.get(key));
  layout();
}

// Fit every visible tile on the screen: choose the column count that gives the largest tile; tiles
// are between 1.0 and 1.6 times as wide as high, so a seat map with aisles still fills the height.
function layout() {
  const shown = [...tiles.values()].filter((el) => !el.hidden).length || 1;
  const width = grid.clientWidth - 12, height = grid.clientHeight - 12, gap = 3, aspect = 1.4;
  let cols = 1, rows = shown, best = 0;
  let maxRow = 0, maxCol = 0;
  if (seatMap && !attentionOnly && !query) {
    for (const s of seats.values()) { maxRow = Math.max(maxRow, s.row || 0); maxCol = Math.max(maxCol, s.col || 0); }
  }
  if (maxRow && maxCol) {
    cols = maxCol; rows = maxRow;
  } else {
    for (let c = 1; c <= shown; c++) {
      const r = Math.ceil(shown / c);
      const w = Math.min((width - gap * (c - 1)) / c, ((height - gap * (r - 1)) / r) * aspect);
      if (w > best) { best = w; cols = c; rows = r; }
    }
  }
  const cellW = (width - gap * (cols - 1)) / cols, cellH = (height - gap * (rows - 1)) / rows;
  const w = Math.max(20, Math.min(150, Math.floor(Math.min(cellW, cellH * 1.6))));
  const h = Math.max(16, Math.floor(Math.min(cellH, w / 1.0, 110)));
  grid.style.setProperty("--cols", cols);
  grid.style.setProperty("--tw", w + "px");
  grid.style.setProperty("--th", Math.max(Math.floor(w / 1.6), h) + "px");
}

// ---------------------------------------------------------------- header: counts, clock, discovery
function renderHall(hall) {
  const counts = document.getElementById("counts");
  counts.innerHTML = STATES
    .filter((n) => hall.counts[n] || n === "live")
    .map((n) => `<span class="chip ${n}" title="${esc(STATE_TEXT[n])}">${esc(T["count_" + n])} <b>${hall.counts[n] || 0}</b></span>`)
    .join("");
  say(hall.note || "");
}

function renderExam(e) {
  exam = e;
  skewMs = new Date(e.server_time).getTime() - Date.now();
  document.getElementById("start-exam").hidden = !!(e.started_at || e.ended_at);
  document.getElementById("end-exam").hidden = !!e.ended_at;
  tick();
}

function tick() {
  if (!exam) return;
  const now = Date.now() + skewMs;
  const ends = new Date(exam.ends_at).getTime();
  const clock = document.getElementById("clock");
  let state, left;
  if (exam.ended_at) { state = T.clock_ended; left = 0; }
  else if (!exam.started_at && now < new Date(exam.starts_at).getTime()) { state = T.clock_starts_in; left = new Date(exam.starts_at).getTime() - now; }
  else { state = exam.started_at ? T.clock_running : T.clock_not_started; left = ends - now; }
  const secs = Math.max(0, Math.round(left / 1000));
  const text = `${Math.floor(secs / 3600)}:${String(Math.floor(secs / 60) % 60).padStart(2, "0")}:${String(secs % 60).padStart(2, "0")}`;
  document.getElementById("clock-state").textContent = state;
  document.getElementById("clock-left").textContent = exam.ended_at ? hhmm(exam.ended_at) : text;
  const extra = exam.last_end_at !== exam.ends_at ? " · " + fmt(T.clock_extra_until, { time: hhmm(exam.last_end_at) }) : "";
  document.getElementById("clock-ends").textContent = `→ ${hhmm(exam.ends_at)}${exam.last_end_at !== exam.ends_at ? "+" : ""}`;
  const started = exam.started_at ? fmt(T.clock_started, { time: hhmm(exam.started_at) }) : T.clock_not_yet;
  clock.title = `${fmt(T.clock_ends, { time: hhmm(exam.ends_at) })}${extra}; ${started}`;
  clock.classList.toggle("ending", !exam.ended_at && left < 15 * 60 * 1000 && left > 0);
  clock.classList.toggle("over", !exam.ended_at && left <= 0);
}

// ---------------------------------------------------------------- observations
function obsText(o) {
  const d = o.detail || {};
  if (o.kind === "capture_gap") {
    const span = d.until ? fmt(T.gap_span, { seconds: d.seconds, since: hms(d.since), until: hms(d.until) }) : fmt(T.gap_open, { since: hms(d.since) });
    return `${KIND_TEXT[o.kind] || o.kind} (${span})`;
  }
  const extra = d.host ? ` ${d.host}` : d.count ? ` (${d.count})` : d.category ? ` (${d.category})` : d.minutes_early ? ` (${fmt(T.minutes_early, { minutes: d.minutes_early })})` : d.skew_s ? ` (${d.skew_s} s)` : "";
  return (KIND_TEXT[o.kind] || o.kind) + extra;
}

function applyObservations(items, fresh) {
  for (const o of items) {
    const had = observations.get(o.id);
    observations.set(o.id, o);
    if (fresh && !had && !o.acked_at && o.kind === "help_request") toast(o);
    if (o.acked_at) dropToast(o.id);
  }
  renderFeed();
}

function renderFeed() {
  const items = [...observations.values()].sort((a, b) => (!a.acked_at - !b.acked_at) * -1 || b.id - a.id).slice(0, 200);
  const open = items.filter((o) => !o.acked_at).length;
  const pill = document.getElementById("open-count");
  pill.textContent = String(open);
  pill.classList.toggle("zero", open === 0);
  feed.innerHTML = items.map((o) => `
    <li class="${o.acked_at ? "acked" : "open"} k-${esc(o.kind)}" data-id="${o.id}" data-r="${o.r == null ? "" : o.r}">
      <span class="what">${esc(obsText(o))}</span>
      <span class="who" title="${esc(T.open_seat_title)}">${esc(o.seat || o.no || "–")} · ${esc(o.name || "")} · ${hhmm(o.at)}</span>
      ${o.acked_at ? `<span class="muted" title="${esc(fmt(T.acked_by, { user: o.acked_by }))}">✓</span>` : `<button type="button" data-ack="${o.id}">${esc(T.ack)}</button>`}
    </li>`).join("");
}

async function acknowledge(id) {
  await api(`/exams/${examId}/observations/${id}/ack`, { method: "POST", body: "{}" });
  const o = observations.get(id);
  if (o) { o.acked_at = new Date().toISOString(); applyObservations([o], false); }
}

feed.addEventListener("click", (event) => {
  const ack = event.target.closest("[data-ack]");
  if (ack) { acknowledge(Number(ack.dataset.ack)).catch((e) => say(e.message, true)); return; }
  const li = event.target.closest("li[data-r]");
  if (li && li.dataset.r) openDetail("r" + li.dataset.r);
});

const toasts = document.getElementById("toasts");
function toast(o) {
  if (toasts.querySelector(`[data-toast="${o.id}"]`)) return;
  const div = document.createElement("div");
  div.className = "toast";
  div.dataset.toast = o.id;
  div.innerHTML = `<span><b>${esc(fmt(T.seat, { seat: o.seat || o.no || "–" }))}</b> ${esc(fmt(T.asks_for_help, { name: o.name || "" }))}</span>
    <button type="button" data-open>${esc(T.open_seat)}</button><button type="button" data-ack>${esc(T.acknowledge)}</button>`;
  div.querySelector("[data-ack]").addEventListener("click", () => acknowledge(o.id).catch((e) => say(e.message, true)));
  div.querySelector("[data-open]").addEventListener("click", () => o.r != null && openDetail("r" + o.r));
  toasts.appendChild(div);
  while (toasts.children.length > 4) toasts.firstChild.remove();
}
function dropToast(id) { const t = toasts.querySelector(`[data-toast="${id}"]`); if (t) t.remove(); }

// ---------------------------------------------------------------- seat detail
function refreshDetailHeader(s) {
  document.getElementById("detail-title").textContent = `${fmt(T.seat, { seat: s.seat || "–" })} · ${s.name} · ${STATE_TEXT[s.state] || s.state}`;
}

async function openDetail(key) {
  const s = seats.get(key);
  if (!s || s.r == null) return;
  openSeat = key;
  refreshDetailHeader(s);
  if (!detail.open) detail.showModal();
  const d = await api(`/exams/${examId}/seats/${s.r}.json`);
  if (openSeat !== key) return;
  document.getElementById("detail-student").innerHTML = `<b>${esc(d.name)}</b> · ${esc(d.no)}${d.extra ? ` · <b>${esc(fmt(T.extra_min, { minutes: d.extra }))}</b> ${esc(T.extra_time)}` : ""}`;
  const idBox = document.getElementById("detail-id");
  idBox.checked = !!d.id_checked_at;
  document.getElementById("detail-id-by").textContent = d.id_checked_at ? fmt(T.id_by, { user: d.id_checked_by, time: hhmm(d.id_checked_at) }) : "";
  const img = document.getElementById("detail-full");
  const link = document.getElementById("detail-full-link");
  if (d.capture && d.session) {
    const url = `${base}/captures/${d.session.id}/${encodeURIComponent(d.capture.id)}/full`;
    img.src = url; img.hidden = false; link.href = url;
    const c = d.capture;
    document.getElementById("detail-capture-meta").textContent =
      `${hhmm(c.agent_time)} · ${fmt(T.monitor, { number: c.monitor })} · ${c.width}×${c.height}${c.focused_app ? " · " + c.focused_app : ""}${c.window_title ? " — " + c.window_title : ""}`;
  } else {
    img.removeAttribute("src"); img.hidden = true; link.removeAttribute("href");
    document.getElementById("detail-capture-meta").textContent = T.no_capture;
  }
  document.getElementById("detail-capture-now").disabled = !(d.session && !d.session.ended_at);
  document.getElementById("detail-obs").innerHTML = d.observations.map((o) =>
    `<li>${hhmm(o.at)} ${esc(obsText(o))} ${o.acked_at ? `<span class="muted">✓ ${esc(o.acked_by)}</span>` : `<button type="button" data-ack="${o.id}">${esc(T.ack)}</button>`}</li>`).join("") || `<li class=muted>${esc(T.none)}</li>`;
  document.getElementById("detail-sites").innerHTML = d.sites.map((x) =>
    `<li class="${x.decision === "blocked" ? "blocked" : ""}">${hhmm(x.time)} ${esc(x.host)} <span class="muted">${esc(x.decision)} · ${esc(x.source)}</span></li>`).join("") || `<li class=muted>${esc(T.none)}</li>`;
  document.getElementById("detail-devices").innerHTML = d.devices.map((x) =>
    `<li>${hhmm(x.agent_time)} ${esc(x.kind)} <span class="muted">${esc(JSON.stringify(x.detail))}</span></li>`).join("") || `<li class=muted>${esc(T.none)}</li>`;
  document.getElementById("detail-session").textContent = d.session
    ? fmt(T.session, { agent: d.session.agent_id, os: d.session.os, version: d.session.agent_version, address: d.session.client_ip, time: hhmm(d.session.last_seen_at), backlog: d.session.backlog })
    : T.not_enrolled;
}

detail.addEventListener("close", () => {
  const key = openSeat; openSeat = null;
  document.getElementById("detail-capture-msg").textContent = "";
  const el = tiles.get(key); if (el) el.focus();
});
detail.querySelector("[data-close]").addEventListener("click", () => detail.close());
document.getElementById("detail-obs").addEventListener("click", (event) => {
  const ack = event.target.closest("[data-ack]");
  if (ack) acknowledge(Number(ack.dataset.ack)).then(() => openSeat && openDetail(openSeat)).catch((e) => say(e.message, true));
});
document.getElementById("detail-id").addEventListener("change", async (event) => {
  const s = seats.get(openSeat);
  try {
    await api(`/exams/${examId}/seats/${s.r}/attendance`, { method: "POST", body: JSON.stringify({ checked: event.target.checked }) });
    applySeat({ ...s, id_ok: event.target.checked });
    openDetail(openSeat);
  } catch (e) { say(e.message, true); }
});
document.getElementById("detail-capture-now").addEventListener("click", async () => {
  const s = seats.get(openSeat);
  const msg = document.getElementById("detail-capture-msg");
  try {
    await api(`/exams/${examId}/seats/${s.r}/capture-now`, { method: "POST", body: "{}" });
    msg.textContent = T.capture_asked;
  } catch (e) { msg.textContent = e.message; }
});

// ---------------------------------------------------------------- exam start / end
document.getElementById("start-exam").addEventListener("click", async () => {
  if (!confirm(T.confirm_start)) return;
  try { await api(`/exams/${examId}/start`, { method: "POST", body: "{}" }); await load(); } catch (e) { say(e.message, true); }
});
document.getElementById("end-exam").addEventListener("click", async () => {
  const extra = [...seats.values()].filter((s) => s.extra && s.state === "live").length;
  const warn = extra ? "\n\n" + fmt(T.confirm_end_extra, { count: extra }) : "";
  if (!confirm(T.confirm_end + warn)) return;
  try { await api(`/exams/${examId}/end`, { method: "POST", body: "{}" }); await load(); } catch (e) { say(e.message, true); }
});

// ---------------------------------------------------------------- keyboard
function focusedKey() { return document.activeElement && document.activeElement.classList.contains("tile") ? document.activeElement.dataset.key : null; }
function moveFocus(dx, dy) {
  const shown = [...grid.querySelectorAll(".tile:not([hidden])")];
  if (!shown.length) return;
  const current = shown.indexOf(document.activeElement);
  if (current < 0) { shown[0].focus(); return; }
  const cols = Number(getComputedStyle(grid).getPropertyValue("--cols")) || 1;
  let next = current + dx + dy * cols;
  if (seatMap && !attentionOnly && !query) {  // walk the seat map by position
    const me = seats.get(shown[current].dataset.key);
    const want = { row: (me.row || 0) + dy, col: (me.col || 0) + dx };
    const hit = shown.findIndex((el) => { const s = seats.get(el.dataset.key); return s.row === want.row && s.col === want.col; });
    if (hit >= 0) next = hit; else return;
  }
  next = Math.max(0, Math.min(shown.length - 1, next));
  shown[current].tabIndex = -1;
  shown[next].tabIndex = 0;
  shown[next].focus();
}

document.addEventListener("keydown", (event) => {
  const typing = event.target.matches("input[type=search], input[type=text], input:not([type])");
  if (event.key === "Escape" && typing) { event.target.blur(); return; }
  if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
  if (detail.open) {
    if (event.key === "c") document.getElementById("detail-capture-now").click();
    else if (event.key === "i") document.getElementById("detail-id").click();
    return;
  }
  const arrows = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
  if (arrows[event.key] && (focusedKey() || document.activeElement === document.body)) {
    event.preventDefault(); moveFocus(...arrows[event.key]);
  } else if (event.key === "a") {
    document.getElementById("attention").click();
  } else if (event.key === "/") {
    event.preventDefault(); document.getElementById("search").focus();
  } else if (event.key === "o") {
    const first = feed.querySelector("button[data-ack]") || feed.querySelector("li");
    if (first) { first.tabIndex = -1; first.focus(); }
  } else if (event.key === "h") {
    const help = [...observations.values()].filter((o) => o.kind === "help_request" && !o.acked_at && o.r != null).sort((a, b) => a.id - b.id)[0];
    if (help) openDetail("r" + help.r);
  } else if (event.key === "?") {
    document.getElementById("keys").showModal();
  }
});

document.getElementById("attention").addEventListener("click", (event) => {
  attentionOnly = !attentionOnly;
  event.currentTarget.setAttribute("aria-pressed", String(attentionOnly));
  refilter();
});
document.getElementById("search").addEventListener("input", (event) => { query = event.target.value.trim().toLowerCase(); refilter(); });
document.getElementById("help-keys").addEventListener("click", () => document.getElementById("keys").showModal());
new ResizeObserver(() => layout()).observe(grid);

// ---------------------------------------------------------------- loading and the socket
async function load() {
  const data = await api(`/exams/${examId}/hall.json`);
  seatMap = data.seat_map;
  seats.clear();
  order = [];
  for (const s of data.seats) { seats.set(keyOf(s), s); order.push(keyOf(s)); }
  observations.clear();
  applyObservations(data.observations, false);
  renderAll();
  renderHall(data.hall);
  renderExam(data.exam);
  root.dataset.loaded = String(Date.now());
}

setInterval(tick, 1000);
const socket = io({ auth: { exam: examId }, transports: ["websocket", "polling"] });
socket.on("connect", () => { load().catch((e) => say(fmt(T.cannot_load, { error: e.message }), true)); root.dataset.socket = "connected"; });
socket.on("connect_error", (err) => { root.dataset.socket = "refused"; say(fmt(T.refused, { error: err.message }), true); });
socket.on("disconnect", () => { root.dataset.socket = "disconnected"; say(T.interrupted, true); });
socket.on("seats", (msg) => { if (msg.exam === examId) msg.seats.forEach(applySeat); });
socket.on("observations", (msg) => { if (msg.exam === examId) applyObservations(msg.items, true); });
socket.on("hall", (msg) => { if (msg.exam === examId) renderHall(msg); });
socket.on("exam", (msg) => { if (msg.exam === examId) renderExam({ ...exam, ...msg, last_end_at: exam.last_end_at }); });
