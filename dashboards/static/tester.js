// 模拟测试: the testers' page. Start a simulated building, community or scenario in the service, follow
// its progress (messages sent, rate, what it does now) and, for a scenario, its expected outcomes met or
// not. Plain DOM over /api/simulations, /api/simulations/scenarios and /api/hierarchy.
"use strict";
import { refusalDetail } from "./api.js";
import { el, $ } from "./dom.js";

const POLL_MS = 1000;
const STATE = { running: "运行中", finished: "已完成", stopped: "已停止", failed: "失败" };
const KIND = { building: "楼栋", community: "居民区", scenario: "场景" };
const STATUS_TEXT = { 401: "请先登录", 403: "没有测试员权限", 404: "不存在", 409: "冲突", 422: "请求有误", 503: "服务暂不可用" };

let places = { building: [], community: [] };
let scenarios = [];
let placedKinds = [];  // the words of the kinds a simulated place has (/api/device-kinds: each kind's own)
let chosen = null;  // the simulation whose detail is shown


async function api(path, options = {}) {
  const resp = await fetch(path, { headers: { "content-type": "application/json" }, ...options });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const detail = refusalDetail(body, resp.statusText);
    throw new Error(`${STATUS_TEXT[resp.status] || resp.status}：${detail}`);
  }
  return body;
}

function say(text, error = false) {
  const m = $("message");
  m.textContent = text;
  m.classList.toggle("error", error);
}

function fillTargets() {
  const kind = $("kind").value;
  const target = $("target");
  target.replaceChildren();
  $("target-label").textContent = KIND[kind];
  $("duration-field").hidden = kind === "scenario";
  if (kind === "scenario") {
    for (const s of scenarios) {
      target.append(el("option", { value: s.name, disabled: !s.runs_here },
        `${s.title}（${s.name}）${s.runs_here ? "" : " · 仅命令行"}`));
    }
  } else {
    for (const p of places[kind]) target.append(el("option", { value: p.id }, `${p.name}（${p.id}）`));
  }
  describe();
}

function describe() {
  const about = $("about");
  about.replaceChildren();
  if ($("kind").value !== "scenario") {
    const kinds = placedKinds.length ? `（${placedKinds.join("、")}）` : "";
    about.append(`该范围内每台设备${kinds}按真实周期上报，经本服务的 MQTT 代理发布。`);
    return;
  }
  const s = scenarios.find((x) => x.name === $("target").value);
  if (!s) return;
  about.append(el("div", {}, s.summary));
  if (!s.runs_here) about.append(el("div", { class: "muted small" }, `需跳过数小时，请在命令行运行：wanli scenario run ${s.name}`));
  // Each expectation as a sentence; its machine form (what the CLI and tests read) on hover.
  about.append(el("div", { class: "muted small" }, "预期结果："),
    el("ul", {}, ...s.expect.map((e, i) => el("li", { class: "small", title: e }, (s.expect_zh || [])[i] || e))));
}

function clock(iso) {
  return iso ? new Date(iso).toLocaleTimeString("zh-CN", { hour12: false }) : "—";
}

// How far a run is and how long it has left (a scenario's script knows its length; a building runs until stopped).
function leftText(s) {
  if (s >= 3600) return `${Math.floor(s / 3600)} 小时 ${Math.round((s % 3600) / 60)} 分`;
  if (s >= 60) return `${Math.floor(s / 60)} 分 ${Math.round(s % 60)} 秒`;
  return `${Math.round(s)} 秒`;
}

function progressCell(r) {
  if (r.progress === null || r.progress === undefined) {
    return el("td", { class: "progress muted" }, r.state === "running" ? "直到停止" : "—");
  }
  const pct = Math.round(r.progress * 100);
  const fill = el("div", { class: "fill" });
  fill.style.width = `${pct}%`;  // through the CSSOM: the page's CSP allows no style attribute
  const bar = el("div", { class: "bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100",
                          "aria-valuenow": String(pct) }, fill);
  const left = r.state === "running" && r.left_s !== null ? `，剩余约 ${leftText(r.left_s)}` : "";
  return el("td", { class: "progress" }, bar, el("div", { class: "small left" }, `${pct}%${left}`));
}

function renderRuns(runs) {
  const body = $("runs");
  if (!runs.length) {
    body.replaceChildren(el("tr", {}, el("td", { colspan: 10, class: "muted" }, "尚无模拟")));
    return;
  }
  body.replaceChildren(...runs.map((r) => el("tr", { id: `run-${r.id}`, class: r.id === chosen ? "chosen" : "",
    onclick: () => { chosen = r.id; renderDetail(r); renderRuns(runs); } },
  el("td", { class: "mono small" }, r.id),
  el("td", {}, r.drill ? el("span", { class: "drill-tag", title: "演练：模拟设备使用独立的演练编号，不影响真实设备，" +
                                       "通知只发给演练联系人，结束后自动归档" }, "演练") : "", `${KIND[r.kind]} ${r.title}`),
  el("td", {}, el("span", { class: `state ${r.state}` }, STATE[r.state])),
  progressCell(r),
  el("td", { class: "num" }, r.devices.toLocaleString()),
  el("td", { class: "num sent" }, r.sent.toLocaleString()),
  el("td", { class: "num" }, `${r.rate.toFixed(1)}/秒`),
  el("td", {}, clock(r.simulated_at)),
  el("td", { class: "phase" }, r.phase),
  el("td", { class: "actions" }, r.state === "running"
    ? el("button", { type: "button", class: "secondary small", onclick: (ev) => { ev.stopPropagation(); stop(r.id); } }, "停止")
    : ""))));
  const current = runs.find((r) => r.id === chosen);
  if (current) renderDetail(current);
}

function renderDetail(r) {
  $("detail").hidden = false;
  $("detail-title").textContent = `${r.id} · ${KIND[r.kind]} ${r.title}`;
  const verdict = $("verdict");
  verdict.className = "verdict";
  if (r.error) { verdict.textContent = `失败：${r.error}`; verdict.classList.add("bad"); }
  else if (r.result) {
    const met = r.result.outcomes.filter((o) => o.met).length;
    verdict.textContent = `${r.result.ok ? "全部预期达成" : "有预期未达成"}：${met} / ${r.result.outcomes.length}` +
      `（${Math.round(r.result.sim_seconds / 60)} 分钟模拟时间，${r.result.real_seconds.toFixed(0)} 秒）`;
    verdict.classList.add(r.result.ok ? "ok" : "bad");
  } else verdict.textContent = r.state === "running"
    ? `运行中…${r.progress !== null && r.progress !== undefined ? `（${Math.round(r.progress * 100)}%${r.left_s !== null
      ? `，剩余约 ${leftText(r.left_s)}` : ""}）` : ""}` : "";
  $("scope-note").hidden = r.kind !== "scenario";
  $("outcomes").replaceChildren(...(r.result ? r.result.outcomes : []).map((o) =>
    el("li", { class: `outcome ${o.met ? "met" : "unmet"}`, title: `${o.expectation}\n${o.detail}` },
      o.expectation_zh || o.expectation,
      el("div", { class: "muted small seen" }, o.detail_zh || o.detail))));
  $("log").replaceChildren(...r.log.map((line) => el("li", {}, line)));
}

async function refresh() {
  try {
    renderRuns(await api("/api/simulations"));
  } catch (err) {
    say(`无法读取模拟状态：${err.message}`, true);
  }
}

async function start(ev) {
  ev.preventDefault();
  const body = { kind: $("kind").value, target: $("target").value };
  const duration = $("duration").value;
  if (body.kind !== "scenario" && duration) body.duration_s = Number(duration);
  $("start-button").disabled = true;
  try {
    const run = await api("/api/simulations", { method: "POST", body: JSON.stringify(body) });
    chosen = run.id;
    say(`已开始：${run.id}`);
    await refresh();
  } catch (err) {
    say(err.message, true);
  } finally {
    $("start-button").disabled = false;
  }
}

async function stop(id) {
  try {
    await api(`/api/simulations/${encodeURIComponent(id)}/stop`, { method: "POST" });
    say(`已停止：${id}`);
    await refresh();
  } catch (err) {
    say(err.message, true);
  }
}

async function init() {
  try {
    const [h, s, k] = await Promise.all([api("/api/hierarchy"), api("/api/simulations/scenarios"),
                                         api("/api/device-kinds").catch(() => [])]);  // without the words: the sentence without them
    placedKinds = k.filter((kind) => kind.placed).map((kind) => kind.short_label);
    for (const a of h.areas) {
      for (const c of a.communities) {
        places.community.push({ id: c.id, name: c.name });
        for (const b of c.buildings) places.building.push({ id: b.id, name: b.name });
      }
    }
    scenarios = s;
  } catch (err) {
    say(`无法加载楼栋与场景：${err.message}`, true);
  }
  $("kind").addEventListener("change", fillTargets);
  $("target").addEventListener("change", describe);
  $("start").addEventListener("submit", start);
  fillTargets();
  await refresh();
  setInterval(refresh, POLL_MS);
}

init();
