// 楼栋数字化风险画像: one building's risk score and the facts behind it. Read only.
//
// /api/buildings/{id}/profile gives the score, devices, incidents, rectifications and history;
// /api/buildings/{id}/telemetry the charts, read back from the telemetry store. The page follows
// the live stream (/api/stream): an incident change in this building reloads the profile within a
// second; the charts are read again every minute.
"use strict";
import { el, $ } from "./dom.js";
import { SEVERITY, STATE } from "./labels.js";
const BUILDING_STATE = { critical: "紧急警情", incident: "有未结警情", fault: "设备故障", normal: "正常", no_devices: "未接入设备" };
const HEALTH = { online: "在线", offline: "离线", never_seen: "从未上线", tampered: "防拆报警", low_battery: "低电量" };
const ACTIVE = new Set(["open", "acknowledged", "dispatched", "on_scene", "resolved"]);
const RELOAD_DEBOUNCE_MS = 1000;
const TELEMETRY_REFRESH_MS = 60000;
const PORT_HOT_C = 60;  // charging rules' default overheat threshold, drawn as a line
const LOW_BATTERY_PCT = 20;

const buildingId = new URLSearchParams(location.search).get("b") || "";
let profile = null;

function fmtTime(iso) {
  return iso ? new Date(iso).toLocaleString("zh-CN", { hour12: false, month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" }) : "—";
}

function fmtSpan(s) {
  const a = Math.abs(s);
  const text = a < 3600 ? `${Math.max(1, Math.round(a / 60))} 分钟` : a < 86400 ? `${Math.round(a / 3600)} 小时` : `${Math.round(a / 86400)} 天`;
  return text;
}

function showError(text, detail = "") {
  const box = $("error");
  box.replaceChildren(el("span", { class: "title" }, text), detail ? el("span", { class: "raw" }, detail) : "");
  box.hidden = false;
}

// -- rendering -----------------------------------------------------------------------------------

function render(p) {
  $("content").hidden = false;  // first: the charts take their width from the laid-out page
  const b = p.building;
  document.title = `万里街道 · ${b.location.community} ${b.name} · 风险画像`;
  $("title-building").textContent = `${b.location.community} ${b.name}`;
  $("updated").textContent = `更新于 ${new Date(p.at).toLocaleTimeString("zh-CN", { hour12: false })}`;

  $("risk").dataset.level = p.risk.level;
  $("risk-score").textContent = p.risk.score;
  $("risk-level").textContent = `${p.risk.level_zh}风险`;
  $("state-chip").textContent = BUILDING_STATE[p.state] || p.state;
  $("state-chip").dataset.state = p.state;
  const max = Math.max(1, ...p.risk.factors.map((f) => f.points));
  $("factors").replaceChildren(...p.risk.factors.map((f) => el("li", { "data-code": f.code },
    el("span", { class: "factor-label" }, f.label_zh),
    el("span", { class: "bar" }, el("i", { style: { width: `${(f.points / max) * 100}%` } })),
    el("b", { class: "points" }, `+${f.points}`),
    el("span", { class: "factor-detail" }, f.detail_zh))));
  $("factors-empty").hidden = p.risk.factors.length > 0;

  const nearest = b.nearest_station;
  const fact = (term, value) => [el("dt", {}, term), el("dd", {}, value)];
  $("facts").replaceChildren(
    ...fact("位置", `${b.location.street} ${b.location.area} ${b.location.community}`),
    ...fact("楼层", `${b.floors} 层，每层 ${b.units_per_floor} 户${b.floors >= 10 ? "（高层）" : ""}`),
    ...fact("独居老人", b.households.length ? `${b.households.length} 户：${b.households.map((h) => `${h.unit}室`).join("、")}` : "无登记"),
    ...fact("最近微型消防站", nearest ? `${nearest.name}，约 ${Math.round(nearest.distance_m)} 米` : "无"),
  );
  $("chain").replaceChildren(...b.chain.map((t) => el("li", {},
    el("b", {}, t.tier_zh), ` ${t.place}：`,
    t.responders.map((r) => `${r.name}${r.phone ? ` ${r.phone}` : ""}`).join("、") || "—")));

  const c = p.coverage;
  $("coverage").textContent = `烟感覆盖 ${c.covered_units}/${c.units} 户 · 在线率 ${c.online_rate === null ? "—" : `${Math.round(c.online_rate * 100)}%`}（${c.online}/${c.devices} 台）`;
  $("kind-rows").replaceChildren(...p.devices.map((k) => el("tr", { "data-kind": k.kind },
    el("td", {}, k.kind_label),
    ...["registered", "online", "offline", "low_battery", "tampered", "never_seen"].map((f) =>
      el("td", { class: `num${k[f] && !["registered", "online"].includes(f) ? " bad" : ""}`, "data-field": f }, k[f])))));
  $("kinds-empty").hidden = p.devices.length > 0;
  $("attention-block").hidden = p.attention.length === 0;
  $("attention-count").textContent = p.attention.length;
  $("attention-rows").replaceChildren(...p.attention.map((d) => el("tr", {},
    el("td", { class: "mono" }, d.device_id), el("td", {}, d.kind_label), el("td", {}, d.location.label),
    el("td", {}, ...d.health.filter((h) => h !== "online").map((h) => el("span", { class: `badge ${h}` }, HEALTH[h] || h))),
    el("td", { class: "num" }, d.battery_pct === null ? "—" : `${Math.round(d.battery_pct)}%`))));

  $("active-count").textContent = p.active.length;
  $("active-rows").replaceChildren(...p.active.map((i) => el("tr", { "data-incident": i.id, class: `sev-${i.severity}` },
    el("td", {}, el("span", { class: `sev ${i.severity}` }, SEVERITY[i.severity] || i.severity)),
    el("td", {}, el("b", {}, i.title), el("div", { class: "muted small" }, i.location.label)),
    el("td", {}, STATE[i.state] || i.state, i.acknowledged_by ? el("div", { class: "muted small" }, i.acknowledged_by) : ""),
    el("td", { class: "muted" }, fmtTime(i.opened_at)))));
  $("active-empty").hidden = p.active.length > 0;

  const overdue = p.rectifications.filter((r) => r.overdue).length;
  $("rect-count").textContent = p.rectifications.length;
  $("overdue-count").textContent = overdue ? `其中 ${overdue} 项超期` : "";
  const now = Date.now();
  $("rect-rows").replaceChildren(...p.rectifications.map((r) => {
    const left = (Date.parse(r.deadline_at) - now) / 1000;
    return el("tr", { "data-incident": r.incident.id, class: r.overdue ? "overdue" : "" },
      el("td", {}, el("b", {}, r.category_zh)),
      el("td", { class: "small" }, r.incident.detail.split("；")[0]),
      el("td", {}, STATE[r.incident.state] || r.incident.state),
      el("td", { class: "deadline" }, r.overdue ? `已超期 ${fmtSpan(left)}` : `剩 ${fmtSpan(left)}`,
         el("div", { class: "muted small" }, `期限 ${fmtTime(r.deadline_at)}`)));
  }));
  $("rect-empty").hidden = p.rectifications.length > 0;

  const h = p.history;
  $("days").textContent = h.days;
  const stat = (label, value, cls = "") => el("div", { class: `stat ${cls}` }, el("span", {}, label), el("b", {}, value));
  $("history-stats").replaceChildren(
    stat("火警报警", h.alarms),
    stat("其中误报", h.false_alarms, h.false_alarms ? "warn" : ""),
    stat("误报率", h.false_alarm_rate === null ? "—" : `${Math.round(h.false_alarm_rate * 100)}%`, h.false_alarm_rate >= 0.5 ? "warn" : ""),
    stat("充电异常", h.charging_anomalies, h.charging_anomalies ? "bad" : ""),
    stat("隐患上报", h.hazards),
  );
  WanliCharts.bars($("chart-history"), h.by_day.map((d) => ({ ...d, real: d.alarms - d.false_alarms })), [
    { key: "real", label: "火警（非误报）", colour: "#ff3b3b" },
    { key: "false_alarms", label: "误报", colour: "#8fa3b8" },
    { key: "charging", label: "充电异常", colour: "#ff8c1a" },
    { key: "hazards", label: "隐患上报", colour: "#f5c400" },
  ]);
  $("recent-rows").replaceChildren(...h.recent.map((i) => el("tr", {},
    el("td", { class: "muted" }, fmtTime(i.opened_at)), el("td", {}, i.title), el("td", { class: "mono" }, i.device_id),
    el("td", {}, STATE[i.state] || i.state))));
}

function renderTelemetry(t) {
  if (!t.available) {
    $("temp-note").textContent = "（此服务未接入时序库）";
    $("battery-note").textContent = "";
  } else {
    const resolution = { raw: " · 原始读数", hourly: " · 小时均值" }[t.resolution] || "";
    $("temp-note").textContent = `（${t.store}${resolution}）`;
    $("battery-note").textContent = `（共 ${t.detectors_total} 台）`;
  }
  WanliCharts.lines($("chart-temperature"), t.charging_temperature, {
    unit: "°C", min: 20, threshold: PORT_HOT_C, thresholdLabel: `过热 ${PORT_HOT_C}°C`,
    emptyText: t.available ? "该楼栋没有充电桩读数" : "无时序数据" });
  WanliCharts.lines($("chart-battery"), t.detector_battery, {
    unit: "%", min: 0, max: 100, threshold: LOW_BATTERY_PCT, thresholdLabel: `低电量 ${LOW_BATTERY_PCT}%`,
    emptyText: t.available ? "还没有烟感上报电量" : "无时序数据" });
}

// -- the server ----------------------------------------------------------------------------------

async function getJson(path) {
  const resp = await fetch(path);
  const body = await resp.json().catch(() => null);
  if (!resp.ok) {
    const detail = body && typeof body.detail === "string" ? body.detail : `HTTP ${resp.status}`;
    throw Object.assign(new Error(detail), { status: resp.status });
  }
  return body;
}

async function loadProfile() {
  try {
    profile = await getJson(`/api/buildings/${encodeURIComponent(buildingId)}/profile`);
    $("error").hidden = true;
    render(profile);
  } catch (err) {
    showError(err.status === 404 ? `找不到楼栋“${buildingId}”` : "无法读取风险画像", err.message);
  }
}

let telemetryAsked = 0;
async function loadTelemetry() {
  const asked = ++telemetryAsked;
  try {
    const days = $("telemetry-range").value;  // over a range: raw for short ones, hourly means beyond (the API picks)
    const query = days ? `?days=${encodeURIComponent(days)}` : "";
    const t = await getJson(`/api/buildings/${encodeURIComponent(buildingId)}/telemetry${query}`);
    if (asked === telemetryAsked) renderTelemetry(t);  // an answer overtaken by a newer question is dropped
  } catch { /* the profile's own error says the server is away */ }
}

let reloadTimer = 0;
function reloadSoon() {
  if (!reloadTimer) reloadTimer = setTimeout(() => { reloadTimer = 0; loadProfile(); }, RELOAD_DEBOUNCE_MS);
}

let source = null;
function setLink(state) {
  $("link").textContent = state === "up" ? "实时连接" : "连接中断，重连中…";
  $("link").className = state === "up" ? "link up" : "link down";
  document.body.classList.toggle("offline", state !== "up");
  document.body.classList.remove("connecting");
}

function connect() {
  if (source) source.close();
  const s = new EventSource("/api/stream");
  source = s;
  s.addEventListener("error", () => {
    if (s !== source) return;
    setLink("down");
    if (s.readyState === EventSource.CLOSED) { s.close(); setTimeout(connect, 3000); }
  });
  s.addEventListener("snapshot", () => { if (s === source) { setLink("up"); reloadSoon(); } });
  s.addEventListener("incident", (e) => {
    if (s !== source) return;
    const { incident } = JSON.parse(e.data);
    const mine = incident.location.building_id === buildingId;
    const shown = profile && profile.active.some((i) => i.id === incident.id);
    if (mine || shown || (incident.scope === `building:${buildingId}`) || !ACTIVE.has(incident.state) && shown) reloadSoon();
  });
}

if (!buildingId) {
  showError("请从街区地图或警情墙选择一栋楼", "缺少参数 ?b=楼栋编号");
} else {
  loadProfile().then(() => { loadTelemetry(); connect(); });
  setInterval(loadTelemetry, TELEMETRY_REFRESH_MS);
  $("telemetry-range").addEventListener("change", loadTelemetry);
  let resizeTimer = 0;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => { if (profile) { render(profile); loadTelemetry(); } }, 200);
  });
}
