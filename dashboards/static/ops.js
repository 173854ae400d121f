// The live incident wall. State comes from the server over SSE (/api/stream): a snapshot on
// every (re)connect, then one event per change. Nothing here polls or reloads.
//
// The wall is watched all day and clicked now and then, so: rows are updated in place (a click is
// never lost to a redraw), a button that just appeared or moved under the pointer waits a moment
// before it takes clicks, nothing on it ever blocks (no alert()/confirm()), and while the link is
// down it says so instead of showing an all-clear ("100-1=0").
//
// No alarm may go unnoticed: every new incident that nobody has acknowledged rings a tone for its
// severity, again and again (RING_EVERY_MS) until someone acknowledges it or silences it for that
// incident (the audit keeps who). Unacknowledged incidents are pinned first, newest first within a
// severity; a new incident out of view shows a "N 条新警情" banner that scrolls to it. Sound is on
// unless the operator switched it off (remembered across reloads); while it is off, or the browser
// still waits for a first click before it lets the page play sound, a banner says so.
"use strict";
import { el, $ } from "./dom.js";
import { SEVERITY, STATE } from "./labels.js";

const SEVERITY_ORDER = { critical: 0, high: 1, warning: 2, info: 3 };
// The device kinds' words come from the server (/api/device-kinds: each kind's own, devices/kinds/); until they
// have arrived, or when the request failed, a row shows the kind's name on the wire: an alarm never waits for a label.
const KIND = { system: "系统" };
let kindsLoaded = false;
// The closed loop 发现 → 上报 → 派单 → 处置 → 核查 → 结案: one next step per state, one button per row.
const NEXT_STEP = {
  open: { action: "acknowledge", label: "确认", hint: "确认已看到此警情（响应计时到此为止）" },
  acknowledged: { action: "dispatch", label: "派单", hint: "已派出处置力量" },
  dispatched: { action: "arrive", label: "到场", hint: "处置人员已到达现场" },
  on_scene: { action: "resolve", label: "处置完毕", hint: "现场处置完毕，等待核查" },
  resolved: { action: "verify", label: "核查结案", hint: "核查无误，结案" },
};
const ACTIVE = new Set(Object.keys(NEXT_STEP));
const SYSTEM = "system";  // faults of the service itself: their own section, never mixed with alarms
const TIER = { building: "楼栋", community: "居民区", area: "片区", street: "街道", district: "区" };
const ACTION_ZH = { acknowledge: "确认", dispatch: "派单", arrive: "到场", resolve: "处置完毕", verify: "核查结案",
                    false_alarm: "标记误报", note: "添加备注", silence: "静音" };

const ACK_LATE_SECONDS = 60;  // the street's 1-minute rule
const FRESH_MS = 3000;        // how long a new incident's row flashes
const ARM_MS = 700;           // a button that just appeared, moved or changed waits this long before it takes clicks
const CONFIRM_MS = 3000;      // 误报 asks once more; the question stands this long
const RECONNECT_MS = 3000;    // after the browser has given up on the stream
const NOTICE_MS = 8000;
const HEARTBEAT_TIMEOUT_MS = 45000;  // only once the server has been seen sending "heartbeat" events
// The tone per severity and how often it repeats until the incident is acknowledged or silenced.
// Warnings ring only when the operator asked for it (wanli.sound.warnings = "on").
const RING_EVERY_MS = { critical: 4000, high: 8000, warning: 20000 };
const TONES = {  // [frequency Hz, start s, length s]
  critical: [[988, 0, 0.2], [740, 0.22, 0.2], [988, 0.5, 0.2], [740, 0.72, 0.2], [988, 1.0, 0.2], [740, 1.22, 0.2]],
  high: [[660, 0, 0.3], [660, 0.45, 0.3]],
  warning: [[520, 0, 0.4]],
};
const SOUND_KEY = "wanli.sound";           // "off" once the operator switched sound off; anything else: on
const WARNINGS_KEY = "wanli.sound.warnings";
const SILENCED_KEY = "wanli.silenced";     // ids of incidents whose tone an operator silenced (the audit has who)
const KPI_DEBOUNCE_MS = 1000;  // an incident change refreshes the KPI panel, at most once a second
const KPI_REFRESH_MS = 30000;  // device health changes without incident events: the panel catches up this often

const incidents = new Map();  // id → the incident as the server last described it
const rows = new Map();       // id → the row's elements and its buttons' state
const fresh = new Set();      // ids of incidents that are new to this screen: their row flashes once
const told = new Map();       // id → who the escalation told: the stream's snapshot, then its `notices` events
let link = "connecting";      // connecting | up | down
let everSynced = false;       // a snapshot has arrived at least once
let settled = false;          // the first snapshot is on the table: changes from now on happen under the pointer
const unseen = new Set();     // ids of new incidents not yet seen in view (the "N 条新警情" banner)
const expanded = new Set();   // group ids whose member incidents are unfolded
let memberOf = new Map();     // member incident id → its group's id (folded under the group's row)
window.wanliBeeps = 0;        // alarm sounds actually played (the tests read it)
window.wanliRings = [];       // { id, severity, at }: each tone played, for the tests' timing figures



function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

// -- time ---------------------------------------------------------------------------------------

// Seconds from opening to acknowledgement; until then, to now. It stops counting when someone responds.
function waited(inc, now = Date.now()) {
  const since = Date.parse(inc.opened_at);
  const until = inc.acknowledged_at ? Date.parse(inc.acknowledged_at) : now;
  return Math.max(0, Math.floor((until - since) / 1000));
}

function fmtDuration(s) {
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  const mm = String(m).padStart(2, "0"), ss = String(sec).padStart(2, "0");
  return h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

// -- acting on an incident -----------------------------------------------------------------------

// The server's refusal in Chinese; its own words go small underneath.
function refusal(status, detail) {
  const m = /cannot (\w+) when (\w+)/.exec(detail);
  if (status === 409 && m) {
    return `未能${ACTION_ZH[m[1]] || m[1]}：该警情已是“${STATE[m[2]] || m[2]}”，可能已由他人处理`;
  }
  if (status === 409) return "操作未执行：警情状态已变化，可能已由他人处理";
  if (status === 404) return "操作未执行：找不到该警情";
  if (status === 422) return "操作未执行：请求内容有误";
  if (status >= 500) return `操作未执行：服务器出错（${status}）`;
  return `操作未执行（${status}）`;
}

async function act(id, action, button, note = "") {
  button.disabled = true;  // at once: a second click must not send a second action
  const r = rows.get(id);
  if (r) { r.busy = true; r.busyButton = button; syncButtons(r); }
  const actor = localStorage.getItem("wanli.operator") || "城运中心值班员";
  let resp;
  try {
    resp = await fetch(`/api/incidents/${encodeURIComponent(id)}/actions`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ action, actor, note }),
    });
  } catch (err) {
    actionFailed(id, button, "操作未执行：无法连接服务器", String(err.message || err));
    return;
  }
  if (!resp.ok) {
    const body = await resp.json().catch(() => ({}));
    const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail || "");
    actionFailed(id, button, refusal(resp.status, detail), detail);
    return;
  }
  // The answer is the incident as it now stands: show it without waiting for the stream's event.
  const updated = await resp.json().catch(() => null);
  if (updated) receive(updated);
  render();
  if (action === "note") notify("备注已保存", "", "ok");
  if (action === "silence") notify("此警情的提示音已静音（仍待确认）", "", "ok");
  if (r) { r.busy = false; syncButtons(r); }  // still waits if the row has just changed step or moved
}

function actionFailed(id, button, text, detail) {
  const r = rows.get(id);
  if (r) { r.busy = false; syncButtons(r); } else button.disabled = false;
  notify(text, detail);
}

let noticeTimer = 0;
function notify(text, detail = "", kind = "error") {
  const box = $("notice");
  box.dataset.kind = kind;
  box.replaceChildren(el("span", { class: "text" }, text), ...(detail ? [el("span", { class: "raw" }, detail)] : []));
  box.hidden = false;
  box.classList.remove("fading");
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => {
    box.classList.add("fading");  // fades out (ops.css), then leaves the layout
    noticeTimer = setTimeout(() => { box.hidden = true; box.classList.remove("fading"); }, 1000);
  }, NOTICE_MS);
}

// 误报 closes the incident for good, so it asks once more, on the button itself: a second click
// within CONFIRM_MS (not sooner than ARM_MS, so a double click is not a confirmation) means yes.
function falseAlarmClicked(id, button) {
  const r = rows.get(id);
  if (!r) return;
  if (!r.confirming) {
    r.confirming = true;
    button.classList.add("confirming");
    setText(button, "确认误报？");
    arm(r);
    clearTimeout(r.confirmTimer);
    r.confirmTimer = setTimeout(() => stopConfirming(r), CONFIRM_MS);
    return;
  }
  stopConfirming(r);
  act(id, "false_alarm", button);
}

function stopConfirming(r) {
  clearTimeout(r.confirmTimer);
  r.confirming = false;
  r.falseAlarm.classList.remove("confirming");
  setText(r.falseAlarm, "误报");
}

// -- the rows -----------------------------------------------------------------------------------

function arm(r) {
  r.armedAt = performance.now() + ARM_MS;
  syncButtons(r);
  clearTimeout(r.armTimer);
  r.armTimer = setTimeout(() => syncButtons(r), ARM_MS + 20);
}

// Disabled while an action is on its way (and then dimmed), or for a moment after the row changed
// under the pointer (not dimmed: a flicker on every change would only distract).
function syncButtons(r) {
  const waiting = r.busy || performance.now() < r.armedAt;
  r.primary.disabled = waiting;
  r.falseAlarm.disabled = waiting;
  r.note.disabled = r.busy;
  r.mute.disabled = r.busy;
  r.primary.classList.toggle("busy", r.busy && r.busyButton === r.primary);
  r.falseAlarm.classList.toggle("busy", r.busy && r.busyButton === r.falseAlarm);
}

function createRow(inc) {
  const r = {
    id: inc.id, busy: false, armedAt: 0, armTimer: 0, confirming: false, confirmTimer: 0, step: null, index: -1,
    badge: el("span", { class: "badge" }),
    title: el("div", { class: "title" }), detail: el("div", { class: "detail" }),
    placeText: el("span", { class: "place-text" }),
    profile: el("a", { class: "profile-link", target: "_blank", rel: "noopener", title: "打开该楼栋的数字化风险画像" }, "画像"),
    device: el("td", { class: "device" }),
    stateLabel: el("span", { class: "state-label" }), by: el("div", { class: "detail by" }),
    tierLabel: el("div", { class: "tier-label" }), told: el("div", { class: "told" }),
    countdown: el("div", { class: "countdown" }),
    waited: el("td", { class: "waited" }), count: el("td", { class: "count" }),
  };
  r.place = el("td", { class: "place" }, r.placeText, r.profile);
  r.primary = el("button", { type: "button", class: "step", onclick: () => act(r.id, r.step.action, r.primary) });
  r.falseAlarm = el("button", { type: "button", class: "false-alarm", "data-action": "false_alarm",
                                title: "标记为误报并结束此警情（需再点一次确认）",
                                onclick: () => falseAlarmClicked(r.id, r.falseAlarm) }, "误报");
  r.note = el("button", { type: "button", class: "note", "data-action": "note", title: "给此警情添加备注（记入处置记录）",
                          onclick: () => openNote(r.id, r.note) }, "备注");
  r.mute = el("button", { type: "button", class: "mute", "data-action": "silence",
                          title: "只停止此警情的提示音（警情仍待确认，升级照常；记入处置记录）",
                          onclick: () => silence(r.id, r.mute) }, "静音");
  r.fold = el("button", { type: "button", class: "fold", title: "展开或收起此群组警情包含的单点报警",
                          onclick: () => { expanded.has(r.id) ? expanded.delete(r.id) : expanded.add(r.id); render(); } });
  r.kindTag = el("span", { class: "kind-tag" });
  r.tr = el("tr", { id: `inc-${inc.id}` },
    el("td", { class: "sev" }, r.badge),
    el("td", { class: "what" }, el("div", { class: "title-line" }, r.kindTag, r.title, r.fold), r.detail),
    r.place, r.device,
    el("td", { class: "state" }, r.stateLabel, r.by),
    el("td", { class: "tier" }, el("div", { class: "tier-line" }, r.tierLabel, r.countdown), r.told),
    r.waited, r.count,
    el("td", { class: "actions" }, r.primary, r.falseAlarm, r.note, r.mute));
  // A click on the row (not on one of its buttons or links) opens the incident's drawer.
  r.tr.addEventListener("click", (e) => {
    if (e.target.closest("button, a")) return;
    if (window.WanliDrawer) window.WanliDrawer.open(r.id);
  });
  if (fresh.has(inc.id)) {
    r.tr.classList.add("fresh");
    setTimeout(() => { r.tr.classList.remove("fresh"); fresh.delete(inc.id); }, FRESH_MS);
  }
  return r;
}

function updateRow(r, inc) {
  const keep = ["fresh", "member", "group", "silenced"].filter((c) => r.tr.classList.contains(c));
  r.tr.className = [`sev-${inc.severity}`, ...keep].join(" ");
  r.tr.dataset.state = inc.state;
  r.badge.className = `badge ${inc.severity}`;
  setText(r.badge, SEVERITY[inc.severity] || inc.severity);
  setText(r.title, inc.title);
  setText(r.detail, inc.detail);
  r.detail.title = inc.detail;
  // A drill's incident (DRILL-… devices) says so on the wall: nobody real was paged for it.
  setText(r.kindTag, inc.drill ? "演练" : inc.category === SYSTEM ? "系统故障" : "");
  r.kindTag.hidden = !inc.drill && inc.category !== SYSTEM;
  r.kindTag.classList.toggle("drill", !!inc.drill);
  r.kindTag.title = inc.drill ? "演练事件：由模拟设备引发，只通知演练联系人，不计入考核指标" : "";
  r.tr.classList.toggle("drill", !!inc.drill);
  r.mute.hidden = !(inc.state === "open" && RING_EVERY_MS[inc.severity]) || silenced.has(inc.id);
  r.tr.classList.toggle("silenced", silenced.has(inc.id));
  setText(r.placeText, inc.location.label);
  if (inc.location.building_id) r.profile.href = `/ops/profile.html?b=${encodeURIComponent(inc.location.building_id)}`;
  r.profile.hidden = !inc.location.building_id;
  setText(r.device, inc.scope ? inc.subject : `${KIND[inc.kind] || inc.kind} ${inc.device_id}`);
  setText(r.stateLabel, STATE[inc.state] || inc.state);
  setText(r.by, inc.acknowledged_by || "");  // who responded, whatever the step now
  r.by.title = inc.acknowledged_by ? `确认人：${inc.acknowledged_by}` : "";
  setText(r.count, String(inc.event_count));
  updateWaited(r, inc);
  setText(r.tierLabel, inc.tier ? `报至${TIER[inc.tier] || inc.tier}` : "");
  updateTold(r, inc);
  updateCountdown(r, inc);
  const step = NEXT_STEP[inc.state];
  if (step !== r.step) {
    r.step = step;
    r.primary.dataset.action = step.action;
    setText(r.primary, step.label);
    r.primary.title = step.hint;
    if (r.confirming) stopConfirming(r);
    if (settled) arm(r);  // a new step under the pointer: no double click walks two steps
  }
}

function updateWaited(r, inc, now = Date.now()) {
  const w = waited(inc, now);
  const cell = r.waited;
  if (inc.acknowledged_at) {
    // Frozen at acknowledgement: how long the response took, muted; past the rule it stays marked.
    const text = `响应 ${fmtDuration(w)}`;
    if (cell.textContent !== text) cell.replaceChildren(el("span", { class: "prefix" }, "响应 "), fmtDuration(w));
    cell.className = `waited acked${w >= ACK_LATE_SECONDS ? " slow" : ""}`;
  } else {
    setText(cell, fmtDuration(w));
    cell.className = `waited${w >= ACK_LATE_SECONDS ? " late" : ""}`;
  }
}

// -- who has been told, and when it climbs next -------------------------------------------------

// The escalation's notices (the outbox) and the attempts to reach people: the rows
// GET /api/incidents/{id}/notifications answers, carried by the stream (in its snapshot, and a `notices`
// event whenever they are queued or sent), so the wall never asks for them.
function receiveTold(incidentId, list) {
  const inc = incidents.get(incidentId);
  if (!inc || !ACTIVE.has(inc.state)) return;  // ended, or not on this wall: nothing to show
  told.set(incidentId, list);
  const r = rows.get(incidentId);
  if (r) updateTold(r, inc);
}

function updateTold(r, inc) {
  const list = told.get(inc.id);
  if (!list) { setText(r.told, ""); r.told.title = ""; return; }
  const names = [...new Set(list.map((n) => n.recipient))];
  const pending = list.filter((n) => !n.sent_at).length;
  const text = names.length ? `已通知 ${names.length} 方：${names.join("、")}` : "未通知任何人";  // one line; the drawer lists them all
  setText(r.told, pending ? `${text}（${pending} 条发送中）` : text);
  r.told.title = list.map((n) => `第${n.step + 1}级 ${n.tier_zh} ${n.role_zh}：${n.recipient}${n.sent_at ? "" : "（发送中）"}`).join("\n");
}

// Seconds until the incident climbs a tier unless acknowledged; null once somebody has it.
function untilEscalation(inc, now = Date.now()) {
  if (inc.state !== "open" || !inc.next_escalation_at) return null;
  return Math.ceil((Date.parse(inc.next_escalation_at) - now) / 1000);
}

function updateCountdown(r, inc, now = Date.now()) {
  const s = untilEscalation(inc, now);
  if (s === null) {
    setText(r.countdown, "");
    r.countdown.className = "countdown";
    return;
  }
  setText(r.countdown, s > 0 ? `${fmtDuration(s)} 后升级` : "正在升级…");
  r.countdown.className = `countdown${s <= 15 ? " soon" : ""}`;
}

// Unacknowledged first; then by severity; newest first, so a new alarm is at the top of its block.
const unacked = (i) => (i.state === "open" ? 1 : 0);
const byUrgency = (a, b) => (unacked(b) - unacked(a)) || (SEVERITY_ORDER[a.severity] - SEVERITY_ORDER[b.severity])
  || (Date.parse(b.opened_at) - Date.parse(a.opened_at)) || (a.id < b.id ? -1 : 1);

// Single-device incidents a group (a suspected fire) carries: folded under the group's row.
function groupMembers(list) {
  const groups = list.filter((i) => i.scope && i.members && i.members.length);
  const found = new Map();
  for (const g of groups) {
    const devices = new Set(g.members);
    for (const i of list) {
      if (!i.scope && i.id !== g.id && i.category === g.category && devices.has(i.device_id) && !found.has(i.id)) {
        found.set(i.id, g.id);
      }
    }
  }
  return found;
}

// Brings the tables to the incidents in place: rows are created, updated, moved and removed one by
// one, never rebuilt, so a click in progress lands where it started. Fire and other alarms go in the
// main table, the service's own faults (category "system") in theirs; a group's members are folded
// under it unless unfolded.
function render() {
  const list = [...incidents.values()].filter((i) => ACTIVE.has(i.state)).sort(byUrgency);
  memberOf = groupMembers(list);
  const alarms = list.filter((i) => i.category !== SYSTEM);
  const system = list.filter((i) => i.category === SYSTEM);
  const shown = [];
  for (const inc of alarms) {
    if (memberOf.has(inc.id)) continue;
    shown.push(inc);
    const members = alarms.filter((m) => memberOf.get(m.id) === inc.id);
    if (members.length && expanded.has(inc.id)) shown.push(...members);
  }
  const wanted = new Set([...shown, ...system].map((i) => i.id));
  for (const [id, r] of rows) {
    if (!wanted.has(id)) {
      r.tr.remove();
      clearTimeout(r.armTimer);
      clearTimeout(r.confirmTimer);
      rows.delete(id);
    }
  }
  placeRows($("incidents"), shown, alarms);
  placeRows($("system-incidents"), system, system);
  $("system-section").hidden = system.length === 0;
  setText($("system-count"), String(system.length));

  const critical = alarms.filter((i) => i.severity === "critical").length;
  const high = alarms.filter((i) => i.severity === "high").length;
  const waiting = alarms.filter((i) => i.state === "open").length;
  setText($("count-active"), String(alarms.length));
  setText($("count-open"), String(waiting));
  setText($("count-critical"), String(critical));
  setText($("count-high"), String(high));
  $("count-open").parentElement.classList.toggle("zero", waiting === 0);
  $("count-critical").parentElement.classList.toggle("zero", critical === 0);
  $("count-high").parentElement.classList.toggle("zero", high === 0);
  document.querySelector("#wall thead").hidden = alarms.length === 0;
  renderStateTile(alarms);

  // Never an all-clear that is not known to be true.
  const empty = $("empty");
  empty.hidden = alarms.length > 0;
  empty.className = link === "down" ? "empty alarm" : "empty";
  setText(empty, link === "up" ? "当前没有未结警情" : link === "down" ? "连接中断，警情可能未显示" : "正在连接服务器…");
  $("offline-note").hidden = !(link === "down" && list.length > 0);
  if (everSynced && link === "up") {  // forget silenced incidents that were taken (not before the first snapshot)
    for (const id of silenced) if (!incidents.has(id) || incidents.get(id).state !== "open") unsilence(id);
  }
  showUnseen();
}

function placeRows(body, list, all) {
  let previous = null;
  list.forEach((inc, index) => {
    let r = rows.get(inc.id);
    if (!r) {
      r = createRow(inc);
      rows.set(inc.id, r);
    }
    updateRow(r, inc);
    updateFold(r, inc, all);
    const place = previous ? previous.nextElementSibling : body.firstElementChild;
    if (place !== r.tr) body.insertBefore(r.tr, place);
    if (r.index !== index) {
      if (r.index !== -1 && settled) arm(r);  // it moved: what was under the pointer is not this row any more
      r.index = index;
    }
    previous = r.tr;
  });
}

// A group's row says how many single alarms it carries, and folds or unfolds them; a member's row says whose.
function updateFold(r, inc, all) {
  const n = all.filter((m) => memberOf.get(m.id) === inc.id).length;
  r.fold.hidden = n === 0;
  if (n) setText(r.fold, expanded.has(inc.id) ? `收起 ${n} 条单点报警 ▴` : `含 ${n} 条单点报警 ▾`);
  r.tr.classList.toggle("member", memberOf.has(inc.id));
  r.tr.classList.toggle("group", n > 0);
}

// -- "N 条新警情": a new incident whose row is out of view -------------------------------------------

function inView(node) {
  const box = node.getBoundingClientRect();
  const top = document.querySelector("body > header").getBoundingClientRect().bottom;
  return box.bottom > top && box.top < window.innerHeight - 8;
}

function showUnseen() {
  const out = [];
  for (const id of unseen) {
    const r = rows.get(id);
    const inc = incidents.get(id);
    if (!inc || !ACTIVE.has(inc.state) || inc.state !== "open") { unseen.delete(id); continue; }
    const target = r ? r.tr : rows.get(memberOf.get(id)) && rows.get(memberOf.get(id)).tr;
    if (!target) continue;
    if (inView(target)) unseen.delete(id); else out.push(target);
  }
  const banner = $("new-banner");
  banner.hidden = out.length === 0;
  if (out.length) {
    out.sort((x, y) => x.getBoundingClientRect().top - y.getBoundingClientRect().top);
    setText(banner, `${out.length} 条新警情 ${out[0].getBoundingClientRect().top < 0 ? "↑" : "↓"} 点击查看`);
    banner.dataset.target = out[0].id;
  }
}

function scrollToNew() {
  const target = document.getElementById($("new-banner").dataset.target || "");
  if (target) target.scrollIntoView({ block: "center" });
  showUnseen();
}

function tick() {
  setText($("clock"), new Date().toLocaleTimeString("zh-CN", { hour12: false }));
  const now = Date.now();
  for (const r of rows.values()) {
    const inc = incidents.get(r.id);
    if (inc && !inc.acknowledged_at) updateWaited(r, inc, now);
    if (inc) updateCountdown(r, inc, now);
  }
}

// -- news from the server -----------------------------------------------------------------------

// Takes an incident as the server describes it, unless what we hold is newer (the answer to our own
// action and the stream's event about it can arrive in either order).
function receive(inc) {
  const held = incidents.get(inc.id);
  if (held && Date.parse(held.updated_at) > Date.parse(inc.updated_at)) return;
  if (becameCritical(inc, held)) ringSoon = true;  // raised to critical: its tone, now
  incidents.set(inc.id, inc);
  if (!ACTIVE.has(inc.state)) told.delete(inc.id);
  if (window.WanliDrawer) window.WanliDrawer.changed(inc);
}

// New and critical, or raised to critical by a repeat (a one-touch press after a smoke alarm, say).
function becameCritical(inc, held) {
  return inc.severity === "critical" && ACTIVE.has(inc.state) && (!held || held.severity !== "critical");
}

function announce(inc) {
  if (!ACTIVE.has(inc.state)) return;
  fresh.add(inc.id);
  unseen.add(inc.id);
  ringSoon = true;
}

function onSnapshot(list, notices) {
  const before = new Map(incidents);
  incidents.clear();
  told.clear();
  for (const inc of list) {
    // After a reconnect, what opened while the link was down is new to this screen: it flashes and,
    // if critical, sounds. The first snapshot after loading is just how things stand.
    const held = before.get(inc.id);
    if (everSynced && !held) announce(inc);
    else rungFor.add(inc.id);  // how things stood: the severity's repeating tone covers it, no tone of its own
    if (everSynced && becameCritical(inc, held)) ringSoon = true;
    incidents.set(inc.id, inc);
    if (notices && notices[inc.id]) told.set(inc.id, notices[inc.id]);
  }
  everSynced = true;
  ringSoon = true;  // what is open and unacknowledged rings, after a reload too
  loadKpi();
}

// -- the link -----------------------------------------------------------------------------------

let source = null;
let retryTimer = 0;
let lastHeard = 0;
let heartbeats = false;

function setLink(state) {
  link = state;
  const node = $("link");
  node.textContent = state === "up" ? "实时连接" : state === "down" ? "连接中断，重连中…" : "连接中…";
  node.className = state === "up" ? "link up" : "link down";
  document.body.classList.toggle("offline", state === "down");
  document.body.classList.toggle("connecting", state === "connecting");
  render();
}

function connect() {
  clearTimeout(retryTimer);
  if (source) source.close();
  const s = new EventSource("/api/stream");
  source = s;
  const current = (handler) => (e) => { if (s === source) { lastHeard = Date.now(); handler(e); } };
  s.addEventListener("error", current(() => {
    setLink("down");
    // A refused stream (e.g. a proxy's 502 while the service restarts) makes the browser give up
    // for good; a dropped one it retries by itself.
    if (s.readyState === EventSource.CLOSED) {
      s.close();
      retryTimer = setTimeout(connect, RECONNECT_MS);
    }
  }));
  s.addEventListener("snapshot", current((e) => {
    loadKinds();
    const snapshot = JSON.parse(e.data);
    onSnapshot(snapshot.incidents, snapshot.notices);
    setLink("up");  // up once the screen is current, not merely connected
    settled = true;
  }));
  s.addEventListener("incident", current((e) => {
    const { created, incident } = JSON.parse(e.data);
    if (created) announce(incident);
    receive(incident);
    render();
    if (ringSoon) ring();
    kpiSoon();
  }));
  s.addEventListener("notices", current((e) => {
    const { incident_id: incidentId, notices } = JSON.parse(e.data);
    receiveTold(incidentId, notices);
  }));
  s.addEventListener("heartbeat", current(() => { heartbeats = true; }));
}

async function loadKinds() {
  if (kindsLoaded) return;
  try {
    const resp = await fetch("/api/device-kinds");
    if (!resp.ok) return;
    for (const k of await resp.json()) KIND[k.name] = k.short_label;
    kindsLoaded = true;
    for (const [id, r] of rows) if (incidents.has(id)) updateRow(r, incidents.get(id));
  } catch { /* the link indicator already says the server is away; the next (re)connect asks again */ }
}

// A stream that stalls without breaking looks like a quiet night. If the server sends heartbeats,
// their absence counts as a broken link.
function watchdog() {
  if (heartbeats && link === "up" && Date.now() - lastHeard > HEARTBEAT_TIMEOUT_MS) {
    setLink("down");
    connect();
  }
}

// -- the KPI panel ------------------------------------------------------------------------------

let kpiTimer = 0;
let kpiLoading = false;

function kpiSoon() {
  if (!kpiTimer) kpiTimer = setTimeout(() => { kpiTimer = 0; loadKpi(); }, KPI_DEBOUNCE_MS);
}

async function loadKpi() {
  if (kpiLoading) { kpiSoon(); return; }
  kpiLoading = true;
  try {
    const resp = await fetch("/api/kpi");
    if (resp.ok) renderKpi(await resp.json());
  } catch { /* the link indicator already says the server is away */ } finally {
    kpiLoading = false;
  }
}

const pct = (x) => `${Math.round(x * 100)}%`;

// A tile: its figure (numerator/denominator first, the rate beside it), and what it has to say, which wraps
// rather than hides; "late" (what is overdue now) leads, in red.
function kpiTile(id, value, sub, level, rate = "", late = "") {
  const v = $(`${id}-value`);
  const text = rate ? `${value} ${rate}` : value;
  if (v.textContent !== text) v.replaceChildren(value, ...(rate ? [" ", el("small", {}, rate)] : []));
  const s = $(`${id}-sub`);
  const subText = late ? `${late}${sub ? "；" + sub : ""}` : sub;
  if (s.textContent !== subText) s.replaceChildren(...(late ? [el("span", { class: "late" }, late)] : []),
                                                   late && sub ? "；" + sub : sub);
  $(id).className = `tile${level ? ` ${level}` : ""}`;
}

function ruleTile(id, fig, what) {
  const late = fig.waiting_past ? `另 ${fig.waiting_past} 起超时未${what}` : "";
  if (fig.total === 0) {
    kpiTile(id, "—", `近 24 小时尚无${what}记录`, fig.waiting_past ? "bad" : "", "", late);
    return;
  }
  const rate = fig.within / fig.total;
  const median = fig.median_s === null ? "" : `中位 ${fmtDuration(Math.round(fig.median_s))}`;
  kpiTile(id, `${fig.within}/${fig.total}`, `${fig.within} 起达标，共 ${fig.total} 起${median ? "，" + median : ""}`,
          rate < 0.9 || fig.waiting_past ? "bad" : "good", pct(rate), late);
}

// Active incidents by state and tier: counted from the table's own incidents, so the tile and the rows
// never disagree, not even for the second the KPI request takes.
function renderStateTile(list) {
  const count = (key) => list.reduce((m, i) => m.set(i[key] || "", (m.get(i[key] || "") || 0) + 1), new Map());
  const byState = count("state"), byTier = count("tier");
  const states = Object.keys(NEXT_STEP).filter((s) => byState.get(s)).map((s) => `${STATE[s]} ${byState.get(s)}`);
  setText($("kpi-state-list"), states.length ? states.join("　") : "无");
  $("kpi-states").className = `tile${byState.get("open") ? " bad" : ""}`;
  const tiers = [...byTier].sort((a, b) => b[1] - a[1]).map(([t, n]) => `${TIER[t] || "未分级"} ${n}`);
  // A drill's rows are on the wall (marked 演练) and so in this count, which says how many; the street's KPIs
  // (/api/kpi) leave them out.
  const drills = list.filter((i) => i.drill).length;
  setText($("kpi-tiers"), (tiers.length ? `按层级：${tiers.join("、")}` : "按层级：—") + (drills ? `；含演练 ${drills}` : ""));
}

function renderKpi(k) {
  ruleTile("kpi-ack", k.acknowledge, "确认");
  ruleTile("kpi-arrive", k.arrive, "到场");
  const d = k.devices;
  kpiTile("kpi-online", d.total ? `${d.online}/${d.total}` : "—",
          d.total ? `${d.online} 台在线，共 ${d.total} 台` : "尚未登记设备",
          d.online_rate === null ? "" : d.online_rate < 0.95 ? "bad" : "good", d.total ? pct(d.online_rate) : "");
  const first = k.overdue[0];
  kpiTile("kpi-overdue", String(k.overdue_rectifications),
          first ? `最久：${first.place} ${first.category_zh}，超期 ${fmtHours(first.overdue_s)}` : "无超期隐患",
          k.overdue_rectifications ? "bad" : "good");
  // Only a building that had false alarms is named; with none, the tile says so.
  const worst = k.false_alarms_by_building[0];
  const alarms = k.false_alarms_by_building.reduce((n, b) => n + b.alarms, 0);
  if (!worst) kpiTile("kpi-false", "—", "近 24 小时无火警", "");
  else if (!worst.false_alarms) kpiTile("kpi-false", "0 起误报", `近 24 小时 ${alarms} 起火警，均非误报`, "good");
  else {
    kpiTile("kpi-false", `${worst.false_alarms}/${worst.alarms}`, `${worst.community} ${worst.building}：${worst.alarms} 起火警中 ${worst.false_alarms} 起误报`,
            worst.rate >= 0.5 ? "warn" : "", pct(worst.rate));
  }
}

function fmtHours(s) {
  if (s < 3600) return `${Math.max(1, Math.round(s / 60))} 分钟`;
  if (s < 86400) return `${Math.round(s / 3600)} 小时`;
  return `${Math.round(s / 86400)} 天`;
}

// -- notes ---------------------------------------------------------------------------------------

let noteFor = null;  // { id, button }

function openNote(id, button) {
  const inc = incidents.get(id);
  if (!inc) return;
  noteFor = { id, button };
  setText($("note-what"), `${inc.title} · ${inc.location.label}`);
  $("note-text").value = "";
  $("note-dialog").showModal();
  $("note-text").focus();
}

function setupNotes() {
  $("note-cancel").addEventListener("click", () => $("note-dialog").close());
  $("note-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("note-text").value.trim();
    if (!text || !noteFor) { $("note-text").focus(); return; }
    $("note-dialog").close();
    act(noteFor.id, "note", noteFor.button, text);
    noteFor = null;
  });
}

// -- sound ----------------------------------------------------------------------------------------

// Sound is on unless the operator switched it off (remembered in this browser). Browsers let a page
// play sound only after a first click or key press on it: until then, and while sound is off, a
// banner says so, and the first click anywhere turns it on.
const sound = { ctx: null, wanted: localStorage.getItem(SOUND_KEY) !== "off",
                warnings: localStorage.getItem(WARNINGS_KEY) === "on" };
const silenced = new Set(JSON.parse(localStorage.getItem(SILENCED_KEY) || "[]"));
let ringSoon = false;
let lastRingMs = 0;
let lastRingSeverity = "";
const rungFor = new Set();  // incidents whose tone has played at least once
let toneEndsMs = 0;         // when the tone now playing ends: another starts only after it

function audioContext() {
  if (!sound.ctx) {
    const Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return null;
    sound.ctx = new Context();
    sound.ctx.addEventListener("statechange", showSound);
  }
  return sound.ctx;
}

const audible = () => sound.wanted && sound.ctx !== null && sound.ctx.state === "running";

// The first click or key press anywhere: the browser now lets the page play sound.
function firstGesture() {
  const ctx = audioContext();
  if (!ctx) return;
  if (sound.wanted && ctx.state !== "running") {
    ctx.resume().then(() => { showSound(); ringSoon = true; ring(); });
  }
}

function toggleSound() {
  const ctx = audioContext();
  if (!ctx) { notify("此浏览器不支持提示音"); return; }
  sound.wanted = !(sound.wanted && ctx.state === "running");
  localStorage.setItem(SOUND_KEY, sound.wanted ? "on" : "off");
  if (sound.wanted) {
    ctx.resume().then(() => {
      tone(ctx.currentTime, 1320, 0.08);  // a short chirp: the speakers work
      showSound();
      ringSoon = true;
      ring();
    });
  }
  showSound();
}

function showSound() {
  const on = audible();
  const button = $("sound");
  button.setAttribute("aria-pressed", String(on));
  button.textContent = on ? "声音已开" : "开启声音";
  const banner = $("sound-banner");
  banner.hidden = on;
  setText($("sound-banner-text"), !sound.wanted
    ? "提示音已关闭：新警情不会响铃。"
    : "提示音尚未开启：浏览器要求先点一下页面，点击页面任意处即开启。");
  $("sound-banner-on").hidden = sound.wanted;
}

function tone(at, frequency, seconds) {
  const osc = sound.ctx.createOscillator(), gain = sound.ctx.createGain();
  osc.type = "square";
  osc.frequency.value = frequency;
  gain.gain.setValueAtTime(0.0001, at);
  gain.gain.exponentialRampToValueAtTime(0.2, at + 0.01);
  gain.gain.exponentialRampToValueAtTime(0.0001, at + seconds);
  osc.connect(gain).connect(sound.ctx.destination);
  osc.start(at);
  osc.stop(at + seconds + 0.02);
}

// What rings: unacknowledged alarms nobody silenced, of a ringing severity; a group's folded members
// ring through their group.
function ringing() {
  return [...incidents.values()].filter((i) => i.state === "open" && RING_EVERY_MS[i.severity]
    && (i.severity !== "warning" || sound.warnings) && !silenced.has(i.id) && !memberOf.has(i.id))
    .sort(byUrgency);
}

// Plays the most severe ringing incident's tone if its interval has passed (or at once: ringSoon).
function ring() {
  const due = ringing();
  const soon = ringSoon;
  ringSoon = false;
  if (!due.length || !audible()) return;
  // An incident that has never rung rings at once (after the tone now playing); the rest repeat at their interval.
  const fresh = due.find((i) => !rungFor.has(i.id));
  const top = fresh || due[0];
  const now = performance.now();
  if (now < toneEndsMs) { ringSoon = soon || !!fresh; return; }
  const sameOrLower = lastRingSeverity && SEVERITY_ORDER[top.severity] >= SEVERITY_ORDER[lastRingSeverity];
  if (!fresh && !soon && sameOrLower && now - lastRingMs < RING_EVERY_MS[top.severity]) return;
  rungFor.add(top.id);
  lastRingMs = now;
  lastRingSeverity = top.severity;
  const t0 = sound.ctx.currentTime + 0.02;
  for (const [frequency, at, seconds] of TONES[top.severity]) tone(t0 + at, frequency, seconds);
  toneEndsMs = now + 1000 * Math.max(...TONES[top.severity].map(([, at, seconds]) => at + seconds)) + 100;
  window.wanliBeeps += 1;
  window.wanliRings.push({ id: top.id, severity: top.severity, at: Date.now() });
}

// An operator silences one incident's tone (it stays unacknowledged and keeps escalating); the audit says who.
async function silence(id, button) {
  silenced.add(id);
  localStorage.setItem(SILENCED_KEY, JSON.stringify([...silenced]));
  const r = rows.get(id);
  if (r) updateRow(r, incidents.get(id));
  await act(id, "silence", button, "提示音已静音（警情仍待确认，升级照常）");
}

function unsilence(id) {
  silenced.delete(id);
  localStorage.setItem(SILENCED_KEY, JSON.stringify([...silenced]));
}

// -- start --------------------------------------------------------------------------------------

$("sound").addEventListener("click", toggleSound);
$("sound-banner-on").addEventListener("click", toggleSound);
$("new-banner").addEventListener("click", scrollToNew);
window.addEventListener("scroll", showUnseen, { passive: true });
document.addEventListener("pointerdown", firstGesture, { capture: true });
document.addEventListener("keydown", firstGesture, { capture: true });
if (sound.wanted) audioContext();  // suspended until the first click, unless the browser allows sound already
showSound();
setupNotes();
connect();
render();
tick();
setInterval(tick, 1000);
setInterval(ring, 250);
setInterval(watchdog, 5000);
setInterval(() => { if (link === "up") loadKpi(); }, KPI_REFRESH_MS);
