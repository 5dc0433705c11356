// A student's timeline for reviewers: one time axis (screens, sites, device events, observations,
// findings, gaps drawn as "no data"), a lazily loaded filmstrip, a preview, a full-size viewer with zoom
// over all monitors, and findings. Images come by id over the audited capture routes.
import { fetchThumbnails, jsonApi } from "./fetch.js";

const root = document.getElementById("review");
const examId = Number(root.dataset.exam);
const student = root.dataset.student;
const base = root.dataset.base;
const api = jsonApi(base);
const $ = (id) => document.getElementById(id);
// The page's words in the reviewer's language (dashboard/script_texts.py); {name} marks a value.
const T = JSON.parse(root.dataset.i18n);
const fmt = (text, values) => text.replace(/\{(\w+)\}/g, (all, name) => (name in values ? String(values[name]) : all));
const sessionInput = $("session");
if (sessionInput) showTimeline(); else root.dataset.loaded = "1"; // a student who never enrolled has none

function showTimeline() {
  const axis = $("axis"), strip = $("strip"), preview = $("preview"), events = $("events");
  const viewer = $("viewer"), viewerBody = $("viewer-body"), form = $("finding-form");
  const esc = (t) => String(t == null ? "" : t).replace(/[&<>"']/g, (c) => "&#" + c.charCodeAt(0) + ";");
  const ms = (iso) => Date.parse(iso);
  const hms = (t) => new Date(t).toISOString().slice(11, 19);
  const dur = (s) => (s >= 3600 ? `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`
    : s >= 60 ? `${Math.floor(s / 60)} min ${Math.round(s % 60)} s` : `${Math.round(s)} s`);

  const short = (s) => (s >= 3600 ? `${Math.floor(s / 3600)}h${String(Math.round((s % 3600) / 60)).padStart(2, "0")}`
    : s >= 60 ? `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, "0")}s` : `${Math.round(s)}s`);

  let data = null, sid = 0, t0 = 0, t1 = 1;
  let frames = [];          // {id, mon, t, thumb, w, h, app, title, i}
  let sel = -1;             // index into frames
  let selT = 0;             // selected moment (ms)
  let obsAt = -1;           // index into data.observations last stepped to
  let zoom = 0;             // 0 = fit, else a scale factor
  let previewTimer = 0;
  let startPinned = false;  // "[" fixed the finding's start: moving on no longer changes it
  const stripItems = [];

  function say(text, bad = false) {
    const notice = $("notice");
    notice.hidden = !text; notice.textContent = text || ""; notice.classList.toggle("bad", bad);
  }
  const fullUrl = (f) => `${base}/captures/${sid}/${encodeURIComponent(f.id)}/full`;
  const pct = (t) => `${(((t - t0) / (t1 - t0)) * 100).toFixed(3)}%`;
  const wid = (a, b) => `${Math.max(((b - a) / (t1 - t0)) * 100, 0.15).toFixed(3)}%`;

  // ------------------------------------------------------------------ loading
  async function load(sessionId, focusT) {
    sid = Number(sessionId);
    root.removeAttribute("data-loaded");
    try {
      data = await api(`/review/exams/${examId}/students/${encodeURIComponent(student)}/timeline.json?session=${sid}`);
    } catch (error) { say(fmt(T.cannot_load, { error: error.message }), true); return; }
    t0 = ms(data.start); t1 = Math.max(ms(data.end), t0 + 1000);
    frames = data.frames.map((f, i) => ({ id: f[0], mon: f[1], t: ms(f[2]), thumb: f[3], w: f[4], h: f[5], app: f[6], title: f[7], rep: f[8], i }));
    const s = data.session;
    const monitors = fmt(data.monitors.length > 1 ? T.monitors_many : T.monitors_one, { count: data.monitors.length });
    $("facts").textContent = `${fmt(T.facts, { records: s.records, changed: frames.length })} · ${monitors} · ${s.os} · ${fmt(T.enrolled, { time: hms(ms(s.enrolled_at)) })}${s.ended_at ? ", " + fmt(T.ended, { time: hms(ms(s.ended_at)) }) : ""} · UTC`;
    drawAxis(); drawStrip(); drawEvents(); drawFindings();
    select(focusT != null ? frameAt(focusT) : 0, focusT);
    root.dataset.loaded = "1";
  }

  // ------------------------------------------------------------------ the axis
  function lane(name, cls = "") {
    const row = document.createElement("div");
    row.className = "lane " + cls;
    row.innerHTML = `<span class="name">${esc(name)}</span><div class="track"></div>`;
    axis.appendChild(row);
    return row.lastElementChild;
  }
  function mark(track, cls, a, b, title) {
    const el = document.createElement("i");
    el.className = cls; el.style.left = pct(a);
    if (b != null) el.style.width = wid(a, b);
    if (title) el.title = title;
    track.appendChild(el);
    return el;
  }
  function noData(track) {
    // Before enrolment, in gaps, and after the last record: nothing was received, and the axis says so.
    const enrolled = ms(data.session.enrolled_at);
    if (enrolled > t0) mark(track, "nd", t0, enrolled, fmt(T.not_enrolled_before, { time: hms(enrolled) }));
    for (const [a, b] of data.gaps) mark(track, "gap", ms(a), ms(b), fmt(T.gap, { since: hms(ms(a)), until: hms(ms(b)), duration: dur((ms(b) - ms(a)) / 1000) }));
    const last = Math.max(...frames.map((f) => f.t), ...data.spans.map((s) => ms(s[2])), enrolled);
    const limit = 3 * data.session.interval * 1000;
    if (t1 - last > limit) mark(track, "nd", last, t1, fmt(T.no_data_after, { time: hms(last) }));
  }
  function drawAxis() {
    axis.innerHTML = "";
    const ruler = lane("UTC", "ruler");
    const span = t1 - t0;
    const step = [60, 300, 600, 900, 1800, 3600].map((m) => m * 1000).find((m) => span / m <= 14) || 7200000;
    for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
      const el = document.createElement("span"); el.className = "t"; el.style.left = pct(t);
      el.textContent = new Date(t).toISOString().slice(11, 16); ruler.appendChild(el);
    }
    for (const mon of data.monitors) {
      const track = lane(data.monitors.length > 1 ? fmt(T.screen_lane_n, { number: mon + 1 }) : T.screen_lane);
      noData(track);
      for (const s of data.spans) if (s[0] === mon) mark(track, "un", ms(s[1]), ms(s[2]), fmt(T.unchanged_records, { since: hms(ms(s[1])), until: hms(ms(s[2])), count: s[3] }));
      for (const f of frames) if (f.mon === mon) mark(track, "fr", f.t, null, `${hms(f.t)} ${f.app} — ${f.title}`);
    }
    const sites = lane(T.lane_sites);
    for (const s of data.sites) mark(sites, "site" + (s.decision === "blocked" ? " blocked" : ""), ms(s.at), null, `${hms(ms(s.at))} ${s.host} ${s.decision} (${s.source})`);
    const devices = lane(T.lane_device);
    for (const d of data.devices) mark(devices, "dev", ms(d.at), null, `${hms(ms(d.at))} ${d.kind} ${JSON.stringify(d.detail)}`);
    const obs = lane(T.lane_observations);
    for (const o of data.observations) mark(obs, "obs" + (o.reviewed ? " reviewed" : ""), ms(o.at), null, `${hms(ms(o.at))} ${o.label}${o.reviewed ? " " + T.reviewed : ""}`);
    const fd = lane(T.lane_findings);
    for (const f of data.findings) {
      const a = ms(f.span_start), b = f.span_end ? ms(f.span_end) : a;
      mark(fd, "fd " + findingClass(f), a, b, fmt(T.finding_by, { label: f.label, author: f.author, text: f.text }) +
        (f.pending ? " — " + fmt(T.proposed_awaiting, { label: f.pending.label, author: f.pending.author }) : ""));
    }
    const legend = document.createElement("div");
    legend.className = "legend";
    legend.innerHTML = [["fr", T.legend_changed], ["un", T.legend_unchanged], ["nd", T.legend_no_data], ["site", T.legend_site],
      ["blocked", T.legend_blocked], ["dev", T.legend_device], ["obs", T.legend_observation]]
      .map(([k, text]) => `<i class="k-${k}"></i>${esc(text)}`).join("");
    axis.appendChild(legend);
    const cursor = document.createElement("div"); cursor.className = "cursor"; cursor.id = "cursor";
    axis.appendChild(cursor);
    const selMark = document.createElement("div"); selMark.className = "mark"; selMark.id = "span-mark"; selMark.hidden = true;
    axis.appendChild(selMark);
  }
  function trackBox() { return axis.querySelector(".track").getBoundingClientRect(); }
  axis.addEventListener("click", (event) => {
    const box = trackBox();
    if (event.clientX < box.left) return;
    const t = t0 + ((event.clientX - box.left) / box.width) * (t1 - t0);
    select(frameAt(t), t);
  });
  function placeCursor() {
    const box = trackBox(), outer = axis.getBoundingClientRect();
    const x = box.left - outer.left + ((selT - t0) / (t1 - t0)) * box.width;
    $("cursor").style.left = `${x}px`;
    const m = $("span-mark"), a = parseTime(form.start.value), b = parseTime(form.end.value);
    m.hidden = !(a != null && b != null && b > a);
    if (!m.hidden) {
      m.style.left = `${box.left - outer.left + ((a - t0) / (t1 - t0)) * box.width}px`;
      m.style.width = `${((b - a) / (t1 - t0)) * box.width}px`;
    }
  }

  // ------------------------------------------------------------------ the filmstrip (lazy thumbnails)
  const wanted = new Map(); // "<sid>.<capture>" -> img
  let pumping = false;
  const seen = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      const img = entry.target.querySelector("img");
      seen.unobserve(entry.target);
      const f = frames[Number(entry.target.dataset.i)];
      if (f.thumb) { wanted.set(`${sid}.${f.id}`, img); pump(); } else { img.src = fullUrl(f); }
    }
  }, { root: strip, rootMargin: "0px 400px" });

  async function pump() {
    if (pumping) return;
    pumping = true;
    try {
      while (wanted.size) {
        const batch = [...wanted.keys()].slice(0, 32);
        let images;
        try {
          images = await fetchThumbnails(base, examId, batch);
        } catch (error) {
          if (error.status == null) throw error;
          say(fmt(T.thumbnails_refused, { status: error.status }), true); batch.forEach((c) => wanted.delete(c)); continue;
        }
        for (const [id, blob] of images) {
          const img = wanted.get(id);
          if (img) img.src = URL.createObjectURL(blob);
        }
        batch.forEach((c) => wanted.delete(c));
      }
    } finally { pumping = false; }
  }

  function drawStrip() {
    strip.innerHTML = ""; stripItems.length = 0; wanted.clear();
    const items = [...frames.map((f) => ({ t: f.t, f })), ...data.spans.map((s) => ({ t: ms(s[1]), s })),
      ...data.gaps.map((g) => ({ t: ms(g[0]) + 1, g }))].sort((a, b) => a.t - b.t);
    const many = data.monitors.length > 1;
    const lastOf = new Map();  // monitor -> its last drawn screen, which near-identical repeats join
    for (const item of items) {
      let el;
      if (item.f && item.f.rep && lastOf.has(item.f.mon)) {
        // A near-identical screen joins the item before it: one item "×N" with its time span.
        const group = lastOf.get(item.f.mon);
        group.count += 1; group.until = item.f.t;
        group.el.dataset.repeats = group.count;
        group.el.querySelector(".reps").textContent = `×${group.count} ${short((group.until - group.from) / 1000)}`;
        stripItems[item.f.i] = group.el;
        continue;
      }
      if (item.f) {
        const f = item.f;
        el = document.createElement("button");
        el.type = "button"; el.className = "item"; el.dataset.i = f.i; el.dataset.capture = f.id;
        el.title = `${hms(f.t)} · ${f.app} — ${f.title}`;
        el.innerHTML = `<img alt=""><span class="when">${hms(f.t)} ${esc(f.title)}</span>${many ? `<span class="mon">${f.mon + 1}</span>` : ""}<span class="reps"></span>`;
        lastOf.set(f.mon, { el, count: 1, from: f.t, until: f.t });
        el.addEventListener("click", () => select(f.i));
        el.addEventListener("dblclick", openViewer);
        stripItems[f.i] = el;
        seen.observe(el);
      } else if (item.s) {
        const s = item.s, secs = (ms(s[2]) - ms(s[1])) / 1000 + data.session.interval;
        el = document.createElement("div"); el.className = "same";
        el.title = `${many ? fmt(T.screen_n, { number: s[0] + 1 }) : T.screen} ${fmt(T.unchanged_span, { since: hms(ms(s[1])), until: hms(ms(s[2])), count: s[3] })}`;
        el.textContent = `= ${short(secs)}`;
      } else {
        el = document.createElement("div"); el.className = "hole";
        el.title = fmt(T.no_data_span, { since: hms(ms(item.g[0])), until: hms(ms(item.g[1])) });
        el.textContent = fmt(T.no_data_for, { duration: short((ms(item.g[1]) - ms(item.g[0])) / 1000) });
      }
      strip.appendChild(el);
    }
  }

  // ------------------------------------------------------------------ selection
  // Arrow keys step over near-identical repeats: `count` screens that are not a repeat of the one before.
  function skipRepeats(from, count) {
    let at = from;
    const dir = Math.sign(count);
    for (let left = Math.abs(count); left > 0; left -= 1) {
      do { at += dir; } while (at > 0 && at < frames.length - 1 && frames[at].rep);
    }
    return at;
  }
  function frameAt(t) {
    // The latest changed screen at or before t (any monitor); the first one when t is before it.
    let found = 0;
    for (const f of frames) { if (f.t <= t) found = f.i; else break; }
    return frames.length ? found : -1;
  }
  function select(index, t) {
    if (!frames.length) { selT = t != null ? t : t0; placeCursor(); $("preview-empty").hidden = false; return; }
    sel = Math.max(0, Math.min(frames.length - 1, index));
    const f = frames[sel];
    selT = t != null ? t : f.t;
    root.dataset.selected = f.id;
    for (const el of strip.querySelectorAll(".item.sel")) el.classList.remove("sel");
    const item = stripItems[sel];
    if (item) { item.classList.add("sel"); item.scrollIntoView({ block: "nearest", inline: "center" }); }
    placeCursor();
    const next = frames.find((g) => g.mon === f.mon && g.t > f.t);
    $("preview-meta").textContent = `${hms(f.t)}${data.monitors.length > 1 ? " · " + fmt(T.screen_n, { number: f.mon + 1 }) : ""} · ${f.app || "?"} — ${f.title || ""}` +
      (next ? " · " + fmt(T.shown_until, { time: hms(next.t) }) : "") + ` · ${sel + 1}/${frames.length}`;
    $("preview-empty").hidden = !(selT < f.t);
    clearTimeout(previewTimer);
    previewTimer = setTimeout(() => { preview.src = fullUrl(f); }, 120); // holding an arrow key fetches only where it stops
    highlightEvents();
    if (!startPinned && document.activeElement !== form.start) form.start.value = hms(selT);
    if (!viewer.hidden) fillViewer();
  }

  // ------------------------------------------------------------------ events list
  let eventItems = [];
  function drawEvents() {
    const list = [];
    for (const s of data.sites) list.push({ t: ms(s.at), k: s.source === "sentinel" ? "net" : "site", cls: s.decision === "blocked" ? "blocked" : "", what: `${s.host} ${s.decision}${s.reason ? " · " + s.reason : ""}` });
    for (const d of data.devices) list.push({ t: ms(d.at), k: "device", cls: "", what: `${d.kind} ${Object.entries(d.detail).map(([k, v]) => `${k}=${v}`).join(" ")}` });
    for (const [a, b] of data.gaps) list.push({ t: ms(a), k: "gap", cls: "gap", what: fmt(T.gap_event, { duration: dur((ms(b) - ms(a)) / 1000), time: hms(ms(b)) }) });
    // Last, so that at the same moment (a blocked site and the observation it raised) the observation is "now".
    for (const o of data.observations) list.push({ t: ms(o.at), k: "obs", cls: o.reviewed ? "" : "obs-open", what: `${o.label}${o.reviewed ? " " + T.reviewed : " — " + T.unreviewed}`, obs: o });
    list.sort((a, b) => a.t - b.t);
    events.innerHTML = list.length ? "" : `<li class="muted">${esc(T.no_events)}</li>`;
    eventItems = list.map((e) => {
      const li = document.createElement("li");
      li.className = e.cls; li.dataset.t = e.t;
      li.innerHTML = `<span class="k">${hms(e.t)}</span> <span class="k">${e.k}</span> <span class="what">${esc(e.what)}</span>`;
      li.title = e.what;
      li.addEventListener("click", () => { if (e.obs) useObservation(e.obs); select(frameAt(e.t), e.t); });
      events.appendChild(li);
      return li;
    });
  }
  function highlightEvents() {
    const near = 60000;
    let best = null;
    for (const li of eventItems) {
      const t = Number(li.dataset.t);
      li.classList.toggle("near", Math.abs(t - selT) <= near);
      li.classList.remove("now");
      if (t <= selT + 1000) best = li;
    }
    if (best) { best.classList.add("now"); if (!$("events").hidden) best.scrollIntoView({ block: "nearest" }); }
  }
  function useObservation(o) {
    form.observation_id.value = o.id;
    $("form-obs").textContent = fmt(T.about, { label: o.label, time: hms(ms(o.at)) });
  }
  function stepObservation(direction) {
    const list = data.observations;
    if (!list.length) { say(T.no_observations); return; }
    let index = -1;
    if (direction > 0) index = list.findIndex((o) => ms(o.at) > selT + 500);
    else for (let i = list.length - 1; i >= 0; i--) if (ms(list[i].at) < selT - 500) { index = i; break; }
    if (index < 0) { say(direction > 0 ? T.no_later : T.no_earlier); return; }
    say("");
    obsAt = index;
    useObservation(list[index]);
    select(frameAt(ms(list[index].at)), ms(list[index].at));
  }

  // ------------------------------------------------------------------ findings
  function findingClass(f) {
    if (f.kind === "no_irregularity") return "clear";
    if (f.kind === "note") return "note";
    return f.counts ? "suspected" : "awaiting";
  }
  function drawFindings() {
    const list = $("findings");
    $("finding-count").textContent = data.findings.length;
    list.innerHTML = data.findings.length ? "" : `<li class="muted">${fmt(esc(T.no_findings), { key: "<kbd>r</kbd>" })}</li>`;
    const stamp = (e) => e.created_at.slice(0, 19).replace("T", " ");
    for (const f of data.findings) {
      const li = document.createElement("li");
      li.className = "finding " + findingClass(f) + (f.pending ? " has-pending" : ""); li.dataset.id = f.id;
      const when = hms(ms(f.span_start)) + (f.span_end ? `–${hms(ms(f.span_end))}` : "");
      const confirmations = f.confirmations.map((c) => `<div class="by">${esc(fmt(T.confirmed_by, { author: c.author, time: stamp(c) }))}${c.text ? ": " + esc(c.text) : ""}</div>`).join("");
      const history = f.history.map((h) => `<div class="hist">${esc(fmt(T.corrects, { id: h.id, kind: h.kind.replace(/_/g, " "), author: h.author, time: h.created_at.slice(11, 19) }))}${h.text ? " — " + esc(h.text) : ""}</div>`).join("");
      // A proposal to clear, correct or withdraw a confirmed suspicion: it stands until a second person confirms.
      const p = f.pending;
      const pending = p ? `<div class="pending" data-id="${p.id}"><div><span class="proposal">${esc(fmt(T.proposed_by, { label: p.label, author: p.author }))}</span>` +
        ` · ${esc(fmt(T.awaiting, { id: p.id, time: p.created_at.slice(0, 19).replace("T", " ") }))}</div>${p.text ? `<div>${esc(p.text)}</div>` : ""}` +
        `<div class="acts">${p.may_confirm ? `<button type="button" data-act="confirm-pending">${esc(fmt(T.confirm_label, { label: p.label }))}</button>` : ""}` +
        `${p.mine ? `<button type="button" data-act="withdraw-pending" class="link">${esc(T.withdraw_proposal)}</button>` : ""}</div></div>` : "";
      li.innerHTML = `<div><span class="status">${esc(f.label)}</span> · ${when}</div>` +
        (f.text ? `<div>${esc(f.text)}</div>` : "") +
        `<div class="by">${esc(fmt(T.by_at, { id: f.id, author: f.author, time: f.created_at.slice(0, 19).replace("T", " ") }))}</div>${confirmations}${history}${pending}` +
        `<div class="acts">${f.may_confirm ? `<button type="button" data-act="confirm">${esc(T.confirm)}</button>` : ""}` +
        `${f.may_propose_clearing ? `<button type="button" data-act="clear" title="${esc(T.needs_second)}">${esc(T.propose_clear)}</button>` : ""}` +
        `${f.mine ? `<button type="button" data-act="withdraw" class="link">${esc(T.withdraw)}</button>` : ""}</div>`;
      li.addEventListener("click", (event) => {
        const act = event.target.dataset && event.target.dataset.act;
        if (act) { event.stopPropagation(); findingAction(f, act); return; }
        select(frameAt(ms(f.span_start)), ms(f.span_start));
      });
      list.appendChild(li);
    }
  }
  async function findingAction(f, act) {
    const findings = `/review/exams/${examId}/sessions/${sid}/findings`;
    const post = (path, body) => api(path, { method: "POST", body: JSON.stringify(body) });
    const ask = {
      withdraw: f.counts && f.kind === "suspected_irregularity"
        ? T.ask_withdraw_confirmed
        : T.ask_withdraw,
      "withdraw-pending": T.ask_withdraw_pending,
      clear: T.ask_clear,
    }[act];
    const text = ask ? prompt(ask) : "";
    if (text === null || (ask && !text.trim())) return;
    try {
      let answer;
      if (act === "clear") {
        answer = await post(findings, { kind: "no_irregularity", start: f.span_start, end: f.span_end, text, supersedes: f.id, observation_id: f.observation_id });
      } else {
        const target = act.endsWith("-pending") ? f.pending.id : f.id;
        answer = await post(`${findings}/${target}/${act.replace("-pending", "")}`, { text });
      }
      const done = { confirm: fmt(T.done_confirm, { id: f.id }), "confirm-pending": fmt(T.done_confirm_pending, { id: f.pending && f.pending.id }),
        withdraw: fmt(T.done_withdraw, { id: f.id }), "withdraw-pending": T.done_withdraw_pending, clear: fmt(T.done_clear, { id: answer.id }) }[act];
      say(answer.pending ? fmt(T.proposal_recorded, { id: answer.id }) : done);
      await reload();
    } catch (error) { say(error.message, true); }
  }
  function parseTime(text) {
    // "HH:MM:SS" on the day of the selection (UTC), or empty.
    const m = /^(\d{1,2}):(\d{2})(?::(\d{2}))?$/.exec((text || "").trim());
    if (!m) return null;
    const day = new Date(selT || t0);
    return Date.UTC(day.getUTCFullYear(), day.getUTCMonth(), day.getUTCDate(), +m[1], +m[2], +(m[3] || 0));
  }
  form.addEventListener("input", placeCursor);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const start = parseTime(form.start.value), end = parseTime(form.end.value);
    if (start == null) { say(T.give_start, true); return; }
    if (form.end.value.trim() && end == null) { say(T.give_end, true); return; }
    const body = { kind: form.kind.value, text: form.text.value, start: new Date(start).toISOString(), end: end != null ? new Date(end).toISOString() : null };
    if (form.observation_id.value) body.observation_id = Number(form.observation_id.value);
    try {
      const answer = await api(`/review/exams/${examId}/sessions/${sid}/findings`, { method: "POST", body: JSON.stringify(body) });
      say(fmt(T.recorded, { id: answer.id }));
      startPinned = false;
      form.text.value = ""; form.end.value = ""; form.observation_id.value = ""; $("form-obs").textContent = "";
      await reload();
    } catch (error) { say(error.message, true); }
  });
  async function reload() {
    const keep = selT;
    await load(sid, keep);
    showTab("findings");
  }

  function showTab(name) {
    for (const tab of document.querySelectorAll(".tabs [data-tab]")) tab.setAttribute("aria-selected", String(tab.dataset.tab === name));
    for (const panel of document.querySelectorAll("[data-panel]")) panel.hidden = panel.dataset.panel !== name;
  }
  for (const tab of document.querySelectorAll(".tabs [data-tab]")) tab.addEventListener("click", () => showTab(tab.dataset.tab));

  // ------------------------------------------------------------------ full-size viewer (all monitors)
  function onScreenAt(t) {
    // Per monitor: the screen shown at t (or its first capture when t is earlier).
    return data.monitors.map((mon) => {
      const own = frames.filter((f) => f.mon === mon);
      let found = own[0];
      for (const f of own) { if (f.t <= t) found = f; else break; }
      return found;
    }).filter(Boolean);
  }
  function openViewer() {
    if (!frames.length) return;
    viewer.hidden = false; zoom = 0; fillViewer();
  }
  function closeViewer() { viewer.hidden = true; }
  function fillViewer() {
    const shown = onScreenAt(Math.max(selT, frames[sel].t));
    const screens = fmt(shown.length > 1 ? T.screens_many : T.screens_one, { count: shown.length });
    $("viewer-title").textContent = `${student} · ${hms(selT)} UTC · ${screens} · ${T.viewer_keys}`;
    viewerBody.innerHTML = "";
    for (const f of shown) {
      const fig = document.createElement("figure");
      const screen = esc(fmt(T.screen_lane_n, { number: f.mon + 1 }));
      fig.innerHTML = `<figcaption>${data.monitors.length > 1 ? `${screen} · ` : ""}${hms(f.t)} · ${esc(f.app)} — ${esc(f.title)} (${f.w}×${f.h})</figcaption><div class="zoombox"><img alt="${screen}"></div>`;
      const img = fig.querySelector("img");
      img.dataset.w = f.w; img.dataset.h = f.h;
      img.src = fullUrl(f);
      viewerBody.appendChild(fig);
    }
    applyZoom();
  }
  function fitScale() {
    const imgs = [...viewerBody.querySelectorAll("img")];
    const totalW = imgs.reduce((s, i) => s + Number(i.dataset.w), 0) || 1;
    const maxH = Math.max(...imgs.map((i) => Number(i.dataset.h)), 1);
    return Math.min((viewerBody.clientWidth - 20 - 10 * (imgs.length - 1)) / totalW, (viewerBody.clientHeight - 40) / maxH);
  }
  function applyZoom() {
    const scale = zoom || fitScale();
    viewerBody.classList.toggle("zoomed", zoom > 0);
    for (const img of viewerBody.querySelectorAll("img")) {
      const w = Number(img.dataset.w), h = Number(img.dataset.h);
      img.style.width = `${w}px`;
      img.style.transform = `scale(${scale})`;
      img.parentElement.style.width = `${w * scale}px`;
      img.parentElement.style.height = `${h * scale}px`;
    }
    $("zoom-level").textContent = zoom ? `${Math.round(scale * 100)}%` : fmt(T.fit_percent, { percent: Math.round(scale * 100) });
    viewer.dataset.scale = scale.toFixed(3);
  }
  function zoomBy(step) {
    if (step === 0) { zoom = 0; } else {
      const current = zoom || fitScale();
      zoom = Math.min(8, Math.max(0.1, step > 0 ? current * 1.25 : current / 1.25));
    }
    applyZoom();
  }
  for (const button of viewer.querySelectorAll("[data-zoom]")) button.addEventListener("click", () => zoomBy(Number(button.dataset.zoom)));
  viewer.querySelector("[data-close]").addEventListener("click", closeViewer);
  $("preview").parentElement.addEventListener("click", openViewer);
  window.addEventListener("resize", () => { placeCursor(); if (!viewer.hidden) applyZoom(); });

  // ------------------------------------------------------------------ keyboard
  document.addEventListener("keydown", (event) => {
    const tag = (event.target.tagName || "").toLowerCase();
    if (["input", "textarea", "select"].includes(tag)) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey || !data) return;
    const step = event.shiftKey ? 10 : 1;
    switch (event.key) {
      case "ArrowRight": select(skipRepeats(sel, step)); break;
      case "ArrowLeft": select(skipRepeats(sel, -step)); break;
      case "Home": select(0); break;
      case "End": select(frames.length - 1); break;
      case "n": stepObservation(1); break;
      case "p": stepObservation(-1); break;
      case "Enter": case "f": if (event.target.tagName === "BUTTON" && event.key === "Enter") return; openViewer(); break;
      case "+": case "=": if (viewer.hidden) return; zoomBy(1); break;
      case "-": if (viewer.hidden) return; zoomBy(-1); break;
      case "0": if (viewer.hidden) return; zoomBy(0); break;
      case "Escape": if (!viewer.hidden) closeViewer(); else return; break;
      case "[": form.start.value = hms(selT); startPinned = true; placeCursor(); showTab("findings"); break;
      case "]": form.end.value = hms(selT); placeCursor(); showTab("findings"); break;
      case "r": showTab("findings"); form.text.focus(); break;
      case "?": $("keys").showModal(); break;
      default: return;
    }
    event.preventDefault();
  });
  $("help-keys").addEventListener("click", () => $("keys").showModal());
  if (sessionInput.tagName === "SELECT") sessionInput.addEventListener("change", () => load(sessionInput.value));

  // A search result links here with ?session=<id>#t=<time>: open that session at that moment.
  const params = new URLSearchParams(location.search);
  const wantedSession = params.get("session");
  if (wantedSession && sessionInput.tagName === "SELECT") sessionInput.value = wantedSession;
  // The review queue links here with #t=<start>&end=<end>&record to record a finding on that span.
  const hashParams = new URLSearchParams(decodeURIComponent(location.hash).slice(1));
  const hashT = hashParams.get("t");
  load(wantedSession && [...(sessionInput.options || [])].some((o) => o.value === wantedSession) ? wantedSession : sessionInput.value,
    hashT ? ms(hashT) : null).then(() => {
    if (!hashParams.has("record")) return;
    form.start.value = hms(ms(hashT)); startPinned = true;
    if (hashParams.get("end")) form.end.value = hms(ms(hashParams.get("end")));
    placeCursor(); showTab("findings"); form.text.focus();
  });
}
