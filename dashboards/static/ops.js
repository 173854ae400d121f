// The live incident wall. State comes from the server over SSE (/api/stream): a snapshot on
// every (re)connect, then one event per change. Nothing here polls or reloads.
"use strict";

const SEVERITY = { critical: "紧急", high: "高", warning: "中", info: "低" };
const SEVERITY_ORDER = { critical: 0, high: 1, warning: 2, info: 3 };
const STATE = { open: "待响应", acknowledged: "已确认", dispatched: "已派单", on_scene: "已到场",
                resolved: "已处置", closed: "已结案", false_alarm: "误报", merged: "已合并" };
const KIND = { smoke_detector: "烟感", charging_station: "充电桩", fire_station: "微型消防站",
               elderly_alarm: "一键通", inspection_report: "巡查上报" };
const ACTIVE = new Set(["open", "acknowledged", "dispatched", "on_scene", "resolved"]);
const ACK_LATE_SECONDS = 60;  // the street's 1-minute rule

const incidents = new Map();
const fresh = new Set();

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function waited(inc) {
  const since = Date.parse(inc.opened_at);
  const until = inc.acknowledged_at ? Date.parse(inc.acknowledged_at) : Date.now();
  return Math.max(0, Math.floor((until - since) / 1000));
}

function fmtDuration(s) {
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  const mm = String(m).padStart(2, "0"), ss = String(sec).padStart(2, "0");
  return h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

async function act(id, action) {
  const actor = localStorage.getItem("wanli.operator") || "城运中心值班员";
  const resp = await fetch(`/api/incidents/${encodeURIComponent(id)}/actions`, {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ action, actor, note: "" }),
  });
  if (!resp.ok) {
    const body = await resp.json().catch(() => ({}));
    alert(`操作失败：${body.detail || resp.status}`);
  }
}

function row(inc) {
  const w = waited(inc);
  const late = !inc.acknowledged_at && w >= ACK_LATE_SECONDS;
  const ackButton = el("button", { "data-action": "acknowledge", onclick: () => act(inc.id, "acknowledge") }, "确认");
  if (inc.state !== "open") ackButton.disabled = true;
  return el("tr", { id: `inc-${inc.id}`, class: `sev-${inc.severity}${fresh.has(inc.id) ? " fresh" : ""}`,
                    "data-state": inc.state },
    el("td", {}, el("span", { class: `badge ${inc.severity}` }, SEVERITY[inc.severity] || inc.severity)),
    el("td", {}, el("div", { class: "title" }, inc.title), el("div", { class: "detail" }, inc.detail)),
    el("td", {}, inc.location.label),
    el("td", {}, `${KIND[inc.kind] || inc.kind} ${inc.device_id}`),
    el("td", { class: "state" }, STATE[inc.state] || inc.state,
       inc.acknowledged_by ? el("div", { class: "detail" }, inc.acknowledged_by) : ""),
    el("td", { class: `waited${late ? " late" : ""}`, "data-opened": inc.opened_at }, fmtDuration(w)),
    el("td", { class: "count" }, inc.event_count),
    el("td", {}, ackButton),
  );
}

function render() {
  const list = [...incidents.values()].filter((i) => ACTIVE.has(i.state)).sort((a, b) =>
    (SEVERITY_ORDER[a.severity] - SEVERITY_ORDER[b.severity]) || (Date.parse(a.opened_at) - Date.parse(b.opened_at)));
  document.getElementById("incidents").replaceChildren(...list.map(row));
  document.getElementById("empty").hidden = list.length > 0;
  document.getElementById("count-active").textContent = list.length;
  document.getElementById("count-critical").textContent = list.filter((i) => i.severity === "critical").length;
  document.getElementById("count-high").textContent = list.filter((i) => i.severity === "high").length;
}

function tick() {
  document.getElementById("clock").textContent = new Date().toLocaleTimeString("zh-CN", { hour12: false });
  for (const cell of document.querySelectorAll("td.waited")) {
    const inc = incidents.get(cell.parentElement.id.slice(4));
    if (!inc) continue;
    const w = waited(inc);
    cell.textContent = fmtDuration(w);
    cell.classList.toggle("late", !inc.acknowledged_at && w >= ACK_LATE_SECONDS);
  }
}

function connect() {
  const link = document.getElementById("link");
  const source = new EventSource("/api/stream");
  source.addEventListener("open", () => { link.textContent = "实时连接"; link.className = "link up"; });
  source.addEventListener("error", () => { link.textContent = "连接中断，重连中…"; link.className = "link down"; });
  source.addEventListener("snapshot", (e) => {
    incidents.clear();
    for (const inc of JSON.parse(e.data).incidents) incidents.set(inc.id, inc);
    render();
  });
  source.addEventListener("incident", (e) => {
    const { created, incident } = JSON.parse(e.data);
    incidents.set(incident.id, incident);
    if (created) { fresh.add(incident.id); setTimeout(() => fresh.delete(incident.id), 3000); }
    render();
  });
}

connect();
tick();
setInterval(tick, 1000);
