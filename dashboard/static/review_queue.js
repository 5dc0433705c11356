// The review queue page: moments across the exam's students, keyboard-driven (docs/review.md).
import { jsonApi } from "./fetch.js";

const root = document.getElementById("queue");
const examId = Number(root.dataset.exam);
const base = root.dataset.base;
const api = jsonApi(base);
const $ = (id) => document.getElementById(id);
const hms = (iso) => iso.slice(11, 19);
const LABELS = JSON.parse(root.dataset.labels);  // dashboard/review_queue.py KIND_LABELS
// The page's words in the reviewer's language (dashboard/script_texts.py); {name} marks a value.
const T = JSON.parse(root.dataset.i18n);
const fmt = (text, values) => text.replace(/\{(\w+)\}/g, (all, name) => (name in values ? String(values[name]) : all));
const stateText = (state) => T["state_" + state] || state.replace("_", " ");
let moments = [];
let index = -1;

function say(text, bad = false) {
  const notice = $("notice");
  notice.textContent = text; notice.hidden = !text; notice.classList.toggle("bad", bad);
}

function describe(m) {
  const parts = [];
  if (m.detail.apps) parts.push(fmt(T.apps, { list: m.detail.apps.join(", ") }));
  if (m.detail.hosts) parts.push(fmt(T.hosts, { list: m.detail.hosts.join(", ") }));
  if (m.detail.category) parts.push(m.detail.category);
  if (m.detail.words) parts.push(fmt(T.words, { list: m.detail.words.join(", ") }));
  return parts.join(" · ");
}

function row(m, i) {
  const tr = document.createElement("tr");
  tr.className = "moment " + m.state;
  tr.dataset.index = i;
  const when = m.seconds ? `${hms(m.start)}–${hms(m.end)} (${m.seconds} s)` : hms(m.start);
  const cells = [m.student_number + (m.reviewer ? ` · ${m.reviewer}` : ""), when,
    m.kinds.map((k) => LABELS[k] || k).join(", "), m.state === "open" ? "" : stateText(m.state)];
  for (const text of cells) { const td = document.createElement("td"); td.textContent = text; tr.append(td); }
  tr.addEventListener("click", () => select(i));
  return tr;
}

async function refresh(keepKey) {
  let data;
  try { data = await api(`/review/exams/${examId}/queue.json${$("mine").checked ? "?mine=1" : ""}`); }
  catch (error) { say(fmt(T.cannot_load, { error: error.message }), true); return; }
  moments = data.moments;
  $("progress").textContent = data.progress;
  const held = Object.entries(data.reviewers).map(([name, r]) =>
    fmt(T.held, { name: name === root.dataset.me ? T.you : name || T.nobody, students: r.students, open: r.open }));
  $("reviewers").textContent = held.length ? fmt(T.by_reviewer, { list: held.join(" · ") }) : "";
  const body = $("moments");
  body.replaceChildren(...moments.map(row));
  $("empty").hidden = moments.length > 0;
  const again = keepKey ? moments.findIndex((m) => m.key === keepKey.key && m.session_id === keepKey.session_id) : -1;
  root.dataset.loaded = "1";
  if (moments.length) select(again >= 0 ? again : Math.max(0, moments.findIndex((m) => m.state === "open")));
  else { index = -1; $("screens").replaceChildren(); $("moment-title").textContent = "–"; $("moment-meta").textContent = ""; }
}

function select(i) {
  if (i < 0 || i >= moments.length) return;
  index = i;
  for (const tr of $("moments").children) tr.classList.toggle("selected", Number(tr.dataset.index) === i);
  $("moments").children[i].scrollIntoView({ block: "nearest" });
  const m = moments[i];
  $("moment-title").textContent = `${m.student_number}: ${m.kinds.map((k) => LABELS[k] || k).join(", ")}`;
  $("moment-meta").textContent = `${hms(m.start)}–${hms(m.end)} UTC · ${m.seconds} s · ${describe(m)} · ${stateText(m.state)}`;
  const names = [T.before, T.during, T.during, T.after];
  $("screens").replaceChildren(...m.capture_ids.map((id, n) => {
    const figure = document.createElement("figure");
    const img = document.createElement("img");
    img.src = `${base}/captures/${m.session_id}/${encodeURIComponent(id)}/full`;
    img.alt = fmt(T.screen, { id });
    const caption = document.createElement("figcaption");
    caption.textContent = m.capture_ids.length === 1 ? T.shown_then : names[n === m.capture_ids.length - 1 && n > 0 ? 3 : n];
    figure.append(img, caption);
    return figure;
  }));
  root.dataset.selected = m.key;
  api(`/review/exams/${examId}/queue/open`, { method: "POST", body: JSON.stringify({ session_id: m.session_id, key: m.key }) })
    .catch((error) => say(error.message, true));
}

async function toggleNothing() {
  const m = moments[index];
  if (!m) return;
  const action = m.state === "nothing_here" ? "reopen" : "nothing-here";
  try { await api(`/review/exams/${examId}/queue/${action}`, { method: "POST", body: JSON.stringify({ session_id: m.session_id, key: m.key }) }); }
  catch (error) { say(error.message, true); return; }
  const next = moments.slice(index + 1).find((n) => n.state === "open") || m;
  await refresh(action === "reopen" ? m : next);
}

function timelineUrl(m, record) {
  const hash = `t=${m.start}` + (record ? `&end=${m.end}&record` : "");
  return `${base}/review/exams/${examId}/students/${encodeURIComponent(m.student_number)}?session=${m.session_id}#${hash}`;
}

function open(record) { const m = moments[index]; if (m) location.href = timelineUrl(m, record); }

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey || event.target.tagName === "INPUT" && event.target.type !== "checkbox") return;
  switch (event.key) {
    case "j": case "ArrowDown": select(index + 1); break;
    case "k": case "ArrowUp": select(index - 1); break;
    case "x": toggleNothing(); break;
    case "f": open(true); break;
    case "t": case "Enter": open(false); break;
    case "m": $("mine").checked = !$("mine").checked; refresh(); break;
    case "?": $("keys").showModal(); break;
    default: return;
  }
  event.preventDefault();
});
$("nothing").addEventListener("click", toggleNothing);
$("finding").addEventListener("click", () => open(true));
$("timeline").addEventListener("click", () => open(false));
$("mine").addEventListener("change", () => refresh());
$("help-keys").addEventListener("click", () => $("keys").showModal());
$("claim").addEventListener("click", async () => {
  try {
    const answer = await api(`/review/exams/${examId}/queue/claim`, { method: "POST", body: "{}" });
    say(answer.students.length ? fmt(T.took, { count: answer.students.length, list: answer.students.join(", ") }) : T.took_none);
  } catch (error) { say(error.message, true); return; }
  $("mine").checked = true;
  refresh();
});
$("release").addEventListener("click", async () => {
  try {
    const answer = await api(`/review/exams/${examId}/queue/release`, { method: "POST", body: "{}" });
    say(answer.released ? fmt(T.gave_back, { count: answer.released }) : T.gave_back_none);
  } catch (error) { say(error.message, true); return; }
  $("mine").checked = false;
  refresh();
});
refresh();
