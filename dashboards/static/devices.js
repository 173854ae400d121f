// 设备管理: the maintainers' page. Register, move and retire devices, import them in bulk, chase the
// unhealthy ones and the unregistered ones. Plain DOM over the JSON API (/api/devices, /api/devices/counts,
// /api/device-kinds, /api/hierarchy, /api/quarantine); the server judges every change, this page shows
// what it said.
"use strict";
import { el, $ } from "./dom.js";

const PAGE_SIZE = 200;
const IMPORT_CHUNK_ROWS = 5000;   // rows per upload, so a large file shows progress
const REFRESH_MS = 30000;         // health changes with every heartbeat
const TEMPLATE = "device_id,kind,building_id,floor,unit,label\nSD-XQ01-0101,smoke_detector,xq-01,1,0101,香泉1号楼 101 厨房\n";

// The device kinds the server understands (/api/device-kinds): name → Chinese label.
const KIND_LABEL = {};
// Badge order: the connection first (one of online / offline / never seen), then what needs a visit.
const HEALTH = { online: "在线", offline: "离线", never_seen: "从未上线", tampered: "防拆报警", low_battery: "低电量" };
const HEALTH_ORDER = Object.keys(HEALTH);
const HISTORY_ACTION = { created: "登记", reactivated: "重新启用", updated: "更新标签", moved: "移动", retired: "退役",
                         unchanged: "未变" };
const QUARANTINE_REASON = { unregistered_device: "未登记", retired_device: "已退役", kind_mismatch: "种类与登记不符" };
const STATUS_TEXT = { 400: "请求有误", 404: "不存在", 409: "冲突", 413: "文件太大", 422: "数据不合格", 503: "服务暂不可用" };
const FIELD_LABEL = { device_id: "设备编号", kind: "种类", building_id: "楼栋", floor: "楼层", unit: "户号",
                      label: "备注标签", reason: "退役原因" };

// The server explains refusals in English; a maintainer reads Chinese. Known phrasings get a Chinese
// sentence, and the server's own words are always shown beside it.
const EXPLAIN = [
  [/^duplicate of line (\d+)/, (m) => `与第 ${m[1]} 行重复`],
  [/^unknown building '(.*)'/, (m) => `楼栋编号 ${m[1]} 不存在`],
  [/^floor '(.*)' is not a whole number/, (m) => `楼层“${m[1]}”不是整数`],
  [/^floor (-?\d+) is outside (.+) \(floors 1-(\d+)/, (m) => `楼层 ${m[1]} 超出 ${m[2]} 的范围（1–${m[3]} 层，地下 -1 至 -5）`],
  [/^unknown device kind '(.*)'/, (m) => `未知的设备种类“${m[1]}”`],
  [/is already registered at (.+); move it instead/, (m) => `该设备已登记在 ${m[1]}。要换位置请在设备列表里用“移动”。`],
  [/is registered as an? (\w+), not an? (\w+)/, (m) => `该设备已登记为${KIND_LABEL[m[1]] || m[1]}，不是${KIND_LABEL[m[2]] || m[2]}`],
  [/^device id '(.*)' must be/, (m) => `设备编号“${m[1]}”不合规：只能用字母、数字、- 和 _，最长 64 位`],
  [/^expected (\d+) columns as in the header, got (\d+)/, (m) => `列数不对：表头有 ${m[1]} 列，这一行有 ${m[2]} 列`],
  [/a floor or unit needs a building/, () => "填写楼层或户号时必须选择楼栋"],
  [/is retired; cannot (\w+) it/, () => "该设备已退役，不能再操作"],
  [/^device '.*' not found/, () => "找不到该设备"],
  [/String should match pattern/, () => "格式不对：只能用字母、数字、- 和 _，最长 64 位"],
  [/the CSV header lacks (.+); it has/, (m) => `表头缺少 ${m[1]} 列`],
  [/the CSV file is empty/, () => "文件是空的"],
  [/is not UTF-8/, () => "文件不是 UTF-8 编码，请另存为 CSV UTF-8"],
  [/neither UTF-8 nor GBK/, () => "文件既不是 UTF-8 也不是 GBK 编码，请另存为 CSV UTF-8 或 CSV（逗号分隔）"],
  [/^retired: left retired/, () => "该设备已退役，本次未重新启用（需要时勾选“重新启用文件中已退役的设备”再导入）"],
];

function explain(text) {
  for (const [pattern, say] of EXPLAIN) {
    const m = pattern.exec(text);
    if (m) return say(m);
  }
  return "";
}

// -- small helpers -------------------------------------------------------------------------------



function fmtTime(iso) {
  return iso ? new Date(iso).toLocaleString("zh-CN", { hour12: false }) : "—";
}

function ago(iso, now = Date.now()) {
  if (!iso) return "从未";
  const s = Math.max(0, Math.floor((now - Date.parse(iso)) / 1000));
  if (s < 10) return "刚刚";
  if (s < 60) return `${s}秒前`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}分钟前`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}小时前`;
  const d = Math.floor(h / 24);
  return d < 60 ? `${d}天前` : new Date(iso).toLocaleDateString("zh-CN");
}

// One request; never throws. ``error`` is the server's own explanation of a refusal.
async function api(path, { method = "GET", json, body, headers } = {}) {
  let resp;
  try {
    resp = await fetch(path, {
      method, body: json === undefined ? body : JSON.stringify(json),
      headers: json === undefined ? headers : { "content-type": "application/json" },
    });
  } catch (err) {
    return { ok: false, status: 0, data: null, error: `无法连接服务器（${err.message}），请检查网络后重试` };
  }
  const data = await resp.json().catch(() => null);
  return { ok: resp.ok, status: resp.status, data, headers: resp.headers,
           error: resp.ok ? "" : detailText(resp.status, data) };
}

function detailText(status, data) {
  const detail = data && data.detail;
  if (Array.isArray(detail)) {  // request validation: one entry per bad field
    return detail.map((d) => {
      const field = Array.isArray(d.loc) ? d.loc[d.loc.length - 1] : "";
      return `${FIELD_LABEL[field] || field}：${d.msg}`;
    }).join("；");
  }
  return typeof detail === "string" && detail ? detail : `服务器返回 ${status}`;
}

// A refusal: the status, a Chinese sentence where we know one, and the server's words.
function showError(box, result, heading = "操作失败") {
  const raw = result.error;
  const zh = explain(raw);
  const status = result.status ? `${result.status} ${STATUS_TEXT[result.status] || ""}`.trim() : "";
  box.className = "notice error";
  box.replaceChildren(
    el("span", { class: "title" }, status ? `${heading}（${status}）` : heading),
    zh ? el("span", { class: "zh" }, zh) : "",
    el("span", { class: zh ? "raw" : "raw detail" }, raw),
  );
  box.hidden = false;
}

function showNotice(box, kind, title, ...lines) {
  box.className = `notice ${kind}`;
  box.replaceChildren(el("span", { class: "title" }, title), ...lines.map((l) => el("span", { class: "raw" }, l)));
  box.hidden = false;
}

let toastTimer = 0;
function toast(text) {
  const box = $("toast");
  box.textContent = text;
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { box.hidden = true; }, 6000);
}

// -- places --------------------------------------------------------------------------------------

const places = { communities: new Map(), buildings: new Map(), areas: [] };

async function loadHierarchy() {
  const r = await api("/api/hierarchy");
  if (!r.ok) {
    showError($("list-error"), r, "无法读取居民区和楼栋");
    return;
  }
  places.areas = r.data.areas;
  for (const area of r.data.areas) {
    for (const c of area.communities) {
      places.communities.set(c.id, { ...c, area: area.name });
      for (const b of c.buildings) places.buildings.set(b.id, { ...b, community_id: c.id, community: c.name });
    }
  }
  for (const select of [$("f-community"), $("r-community"), $("m-community")]) fillCommunities(select);
  renderCodeTables();
}

function fillCommunities(select) {
  for (const area of places.areas) {
    select.append(el("optgroup", { label: area.name },
      ...area.communities.map((c) => el("option", { value: c.id }, c.name))));
  }
}

// The building select follows its community select.
function fillBuildings(select, communityId, first) {
  const community = places.communities.get(communityId);
  select.replaceChildren(el("option", { value: "" }, first),
    ...(community ? community.buildings.map((b) => el("option", { value: b.id }, `${b.name}（${b.floors}层）`)) : []));
  select.disabled = !community;
}

function setPlace(communitySelect, buildingSelect, buildingId, first) {
  const b = places.buildings.get(buildingId);
  communitySelect.value = b ? b.community_id : "";
  fillBuildings(buildingSelect, communitySelect.value, first);
  buildingSelect.value = b ? b.id : "";
}

function floorLimit(input, buildingId) {
  const b = places.buildings.get(buildingId);
  if (b) input.max = b.floors; else input.removeAttribute("max");
}

function renderCodeTables() {
  $("building-codes").replaceChildren(...[...places.buildings.values()].map((b) =>
    el("tr", {}, el("td", { class: "mono" }, b.id), el("td", {}, `${b.community} ${b.name}`), el("td", { class: "muted" }, `${b.floors}层`))));
}

// -- device kinds ---------------------------------------------------------------------------------

const kinds = [];

async function loadKinds() {
  const r = await api("/api/device-kinds");
  if (!r.ok) {
    showError($("list-error"), r, "无法读取设备种类");
    return;
  }
  kinds.splice(0, kinds.length, ...r.data);
  for (const k of kinds) KIND_LABEL[k.name] = k.label_zh;
  for (const select of [$("f-kind"), $("r-kind")]) {
    select.append(...kinds.map((k) => el("option", { value: k.name }, k.label_zh)));
  }
  $("kind-codes").replaceChildren(...kinds.map((k) => el("tr", {},
    el("td", { class: "mono" }, k.name), el("td", {}, k.label_zh),
    el("td", { class: "muted" }, k.heartbeat_s ? `每 ${fmtInterval(k.heartbeat_s)}心跳一次` : "不发心跳"))));
}

function fmtInterval(s) {
  if (s % 3600 === 0) return `${s / 3600} 小时`;
  if (s % 60 === 0) return `${s / 60} 分钟`;
  return `${s} 秒`;
}

// -- 1. the device list ---------------------------------------------------------------------------

// ``counts``: the server's counts for the chosen scope (kind, place, lifecycle), whatever the health filter.
const list = { offset: 0, token: 0, countToken: 0, rows: [], more: false, counts: null };

function filterParams() {
  const p = new URLSearchParams();
  const kind = $("f-kind").value, community = $("f-community").value, building = $("f-building").value;
  if (kind) p.set("kind", kind);
  if (building) p.set("building_id", building); else if (community) p.set("community_id", community);
  p.set("lifecycle", $("f-lifecycle").value);
  const q = $("f-q").value.trim();
  if (q) p.set("q", q);
  return p;
}

const retiredShown = () => $("f-lifecycle").value === "retired";

async function loadList() {
  const token = ++list.token;
  const p = filterParams();
  const health = retiredShown() ? "" : $("f-health").value;  // a retired device has no health
  if (health) p.set("health", health);
  p.set("limit", PAGE_SIZE + 1);  // one more than shown: is there a next page?
  p.set("offset", list.offset);
  const r = await api(`/api/devices?${p}`);
  if (token !== list.token) return;  // a newer filter has been chosen meanwhile
  if (!r.ok) {
    showError($("list-error"), r, "无法读取设备列表");
    return;
  }
  $("list-error").hidden = true;
  list.more = r.data.length > PAGE_SIZE;
  list.rows = r.data.slice(0, PAGE_SIZE);
  $("device-rows").replaceChildren(...list.rows.map(deviceRow));
  $("list-empty").hidden = list.rows.length > 0;
  $("page-prev").disabled = list.offset === 0;
  $("page-next").disabled = !list.more;
  $("page-prev").hidden = $("page-next").hidden = !list.more && list.offset === 0;
  $("list-updated").textContent = `更新于 ${new Date().toLocaleTimeString("zh-CN", { hour12: false })}`;
  for (const b of document.querySelectorAll("#quick button")) b.setAttribute("aria-pressed", String(b.dataset.health === health));
  renderPageInfo();
}

const fmtCount = (n) => n.toLocaleString("zh-CN");

// "第 201–400 台，共 10,997 台": the total is the server's count for the scope and health filter.
function renderPageInfo() {
  const health = retiredShown() ? "" : $("f-health").value;
  const first = list.rows.length ? list.offset + 1 : 0, last = list.offset + list.rows.length;
  let total = list.counts ? (health ? list.counts[health] : list.counts.total) : null;
  if (total === null || total === undefined) total = list.more ? null : last;
  const range = list.more || list.offset ? `第 ${fmtCount(first)}–${fmtCount(last)} 台` : "";
  const all = total === null ? "" : `共 ${fmtCount(total)} 台`;
  $("page-info").textContent = range && all ? `${range}，${all}` : range || all;
}

// The maintainers' lists: how many devices in the chosen scope are offline, low, tampered, never seen.
async function loadCounts() {
  const token = ++list.countToken;
  const r = await api(`/api/devices/counts?${filterParams()}`);
  if (token !== list.countToken) return;
  list.counts = r.ok ? r.data : null;
  const retired = retiredShown();
  $("scope-total").textContent = r.ok ? fmtCount(r.data.total) : "?";
  for (const button of document.querySelectorAll("#quick button")) {
    const n = r.ok && !retired ? r.data[button.dataset.health] : null;
    button.querySelector("b").textContent = retired ? "—" : n === null ? "?" : fmtCount(n);
    button.classList.toggle("has", Boolean(n));
    button.disabled = retired;
  }
  renderPageInfo();
}

function refreshList() {
  loadList();
  loadCounts();
}

function filtersChanged() {
  list.offset = 0;
  $("f-health").disabled = retiredShown();
  refreshList();
}

const sortHealth = (flags) => [...flags].sort((a, b) => HEALTH_ORDER.indexOf(a) - HEALTH_ORDER.indexOf(b));

function deviceRow(d) {
  const retired = d.lifecycle === "retired";
  const low = d.battery_pct !== null && d.health.includes("low_battery");
  const labelDiffers = d.label && !d.location.label.includes(d.label);
  return el("tr", { "data-device-id": d.device_id },
    el("td", {}, el("button", { class: "link mono device-id", type: "button", onclick: () => openHistory(d.device_id) }, d.device_id)),
    el("td", { class: "kind" }, d.kind_label || KIND_LABEL[d.kind] || d.kind),
    el("td", { class: "location" }, d.location.label || "（未指定位置）",
       labelDiffers ? el("div", { class: "muted small" }, d.label) : ""),
    el("td", { class: "health" }, ...healthBadges(d)),
    el("td", { class: `num battery${low ? " low" : ""}` }, d.battery_pct === null ? "—" : `${Math.round(d.battery_pct)}%`),
    el("td", { class: "seen", "data-at": d.last_seen_at || "", title: d.last_seen_at ? fmtTime(d.last_seen_at) : "" }, ago(d.last_seen_at)),
    el("td", { class: "actions" }, ...(retired
      ? [el("button", { type: "button", class: "secondary small", "data-action": "reregister",
                        onclick: () => prefillRegister(d) }, "重新登记")]
      : [el("button", { type: "button", class: "secondary small", "data-action": "credentials",
                        onclick: () => openCredentials({ body: { device_ids: [d.device_id] }, text: d.device_id,
                                                         file: d.device_id, single: d.device_id, count: 1 }) }, "凭据"),
         el("button", { type: "button", class: "secondary small", "data-action": "move", onclick: () => openMove(d) }, "移动"),
         el("button", { type: "button", class: "secondary small", "data-action": "retire", onclick: () => openRetire(d) }, "退役")])),
  );
}

// A retired device has no health (the server sends none), only its retirement.
function healthBadges(d) {
  return [
    ...(d.lifecycle === "retired" ? [el("span", { class: "badge retired" }, "已退役")] : []),
    ...sortHealth(d.health).map((f) => el("span", { class: `badge ${f}`, "data-health": f }, HEALTH[f] || f)),
  ];
}

function tickSeen() {
  const now = Date.now();
  for (const cell of document.querySelectorAll("td.seen")) cell.textContent = ago(cell.dataset.at || null, now);
}

function setupList() {
  $("f-community").addEventListener("change", () => {
    fillBuildings($("f-building"), $("f-community").value, "全部楼栋");
    filtersChanged();
  });
  for (const id of ["f-kind", "f-building", "f-lifecycle"]) $(id).addEventListener("change", filtersChanged);
  $("f-health").addEventListener("change", () => { list.offset = 0; loadList(); });
  $("filters").addEventListener("submit", (e) => e.preventDefault());
  $("f-reset").addEventListener("click", () => {
    $("filters").reset();
    fillBuildings($("f-building"), "", "全部楼栋");
    filtersChanged();
  });
  $("list-refresh").addEventListener("click", refreshList);
  let searching = 0;
  $("f-q").addEventListener("input", () => { clearTimeout(searching); searching = setTimeout(filtersChanged, 250); });
  for (const button of document.querySelectorAll("#quick button")) {
    button.addEventListener("click", () => {
      const health = button.dataset.health;
      $("f-health").value = $("f-health").value === health ? "" : health;
      list.offset = 0;
      loadList();
    });
  }
  $("page-prev").addEventListener("click", () => { list.offset = Math.max(0, list.offset - PAGE_SIZE); loadList(); });
  $("page-next").addEventListener("click", () => { list.offset += PAGE_SIZE; loadList(); });
}

// -- 2. register one device -----------------------------------------------------------------------

function setupRegister() {
  const form = $("register-form");
  $("r-community").addEventListener("change", () => {
    fillBuildings($("r-building"), $("r-community").value, "不指定楼栋");
    floorLimit($("r-floor"), "");
  });
  $("r-building").addEventListener("change", () => floorLimit($("r-floor"), $("r-building").value));
  form.addEventListener("reset", () => {
    setTimeout(() => { fillBuildings($("r-building"), "", "不指定楼栋"); $("register-result").hidden = true; });
  });
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const floor = $("r-floor").value.trim();
    const body = {
      device_id: $("r-device-id").value.trim(), kind: $("r-kind").value, building_id: $("r-building").value,
      floor: floor === "" ? null : Number(floor), unit: $("r-unit").value.trim(), label: $("r-label").value.trim(),
    };
    const box = $("register-result");
    const missing = !body.device_id ? "请填写设备编号" : !body.kind ? "请选择种类" : "";
    if (missing) {
      showNotice(box, "error", missing);
      box.dataset.status = "";
      return;
    }
    const submit = $("r-submit");
    submit.disabled = true;
    const r = await api("/api/devices", { method: "POST", json: body });
    if (r.ok) {
      const d = r.data, where = `${d.kind_label} · ${d.location.label || "未指定位置"}`;
      const outcome = await registerOutcome(r);
      const [kind, title] = {
        created: ["ok", `已登记 ${d.device_id}`],
        reactivated: ["ok", `${d.device_id} 已重新启用`],
        updated: ["ok", `${d.device_id} 已在此登记，备注标签已更新`],
        unchanged: ["info", `${d.device_id} 已按此登记，未作更改`],
      }[outcome];
      showNotice(box, kind, title, where);
      box.dataset.outcome = outcome;
      loadQuarantine();  // it may have been waiting there
    } else {
      showError(box, r, "登记失败");
      box.dataset.outcome = "";
    }
    submit.disabled = false;
    box.dataset.status = String(r.status);
  });
}

// What a successful registration did. The status only says created-or-reactivated (201) or
// unchanged-or-relabelled (200); the device's newest history entry tells which, if this request
// wrote it: it is newer than the newest this page saw before, or (for a device not yet seen here)
// no older than the answer's Date header, which has only whole seconds.
const historySeen = new Map();  // device id → time of its newest history entry seen here

async function registerOutcome(r) {
  const id = r.data.device_id;
  const fallback = r.status === 201 ? "created" : "unchanged";
  const h = await api(`/api/devices/${encodeURIComponent(id)}/history`);
  const newest = h.ok && h.data.length ? h.data[h.data.length - 1] : null;
  if (!newest) return fallback;
  const before = historySeen.get(id);
  historySeen.set(id, newest.at);
  const answered = Date.parse(r.headers.get("date") || "");
  const written = before !== undefined ? newest.at !== before
    : !Number.isNaN(answered) && Date.parse(newest.at) >= answered - 2000;
  const possible = r.status === 201 ? ["created", "reactivated"] : ["updated"];
  return written && possible.includes(newest.action) ? newest.action : fallback;
}

// From the quarantine or a retired row: the form filled in as far as we know, the rest for the maintainer.
function prefillRegister(d) {
  $("register-form").reset();
  setTimeout(() => {  // after the form's reset handler
    $("r-device-id").value = d.device_id;
    $("r-kind").value = KIND_LABEL[d.kind] ? d.kind : "";
    setPlace($("r-community"), $("r-building"), d.building_id || (d.location && d.location.building_id) || "", "不指定楼栋");
    if (d.location) {
      $("r-floor").value = d.location.floor ?? "";
      $("r-unit").value = d.location.unit || "";
      $("r-label").value = d.label || "";
    }
    floorLimit($("r-floor"), $("r-building").value);
    showTab("register");
    ($("r-community").value ? $("r-submit") : $("r-community")).focus();
  });
}

// -- 3. bulk import ------------------------------------------------------------------------------

// CSV records as Python's csv module reads them: a line break inside quotes belongs to the field.
// Each record keeps its physical lines, so the server's line numbers can be mapped back to the file.
function csvRecords(text) {
  const records = [];
  let fields = [], field = "", quoted = false, atFieldStart = true, start = 0, line = 1, firstLine = 1;
  const endRecord = (end) => {
    fields.push(field);
    records.push({ fields, text: text.slice(start, end), line: firstLine, lines: line - firstLine + 1 });
    fields = []; field = ""; atFieldStart = true;
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    const newline = c === "\n" || c === "\r";
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i++; }
      else if (c === '"') quoted = false;
      else {
        if (newline) { if (c === "\r" && text[i + 1] === "\n") i++; line++; field += "\n"; } else field += c;
      }
    } else if (newline) {
      endRecord(i);
      if (c === "\r" && text[i + 1] === "\n") i++;
      line++; start = i + 1; firstLine = line;
    } else if (c === '"' && atFieldStart) { quoted = true; atFieldStart = false; }
    else if (c === ",") { fields.push(field); field = ""; atFieldStart = true; }
    else { field += c; atFieldStart = false; }
  }
  if (start < text.length) endRecord(text.length);
  return records;
}

const isBlank = (rec) => rec.fields.every((f) => !f.trim());

function splitImport(text) {
  const records = csvRecords(text);
  const header = records.shift();
  const chunks = [];
  let current = null;
  for (const rec of records) {
    if (!current || (current.rows >= IMPORT_CHUNK_ROWS && !isBlank(rec))) {
      current = { records: [], rows: 0 };
      chunks.push(current);
    }
    current.records.push(rec);
    if (!isBlank(rec)) current.rows += 1;
  }
  return { header, chunks, total: chunks.reduce((n, c) => n + c.rows, 0) };
}

async function runImport(file) {
  const errorBox = $("import-error");
  errorBox.hidden = true;
  $("import-summary").hidden = true;
  // UTF-8 first (a GBK file is almost never valid UTF-8), then GB18030, a superset of GBK: what Chinese Excel
  // writes for "CSV（逗号分隔）". The rows go to the server as UTF-8 either way.
  let text, encoding = "utf-8";
  const bytes = await file.arrayBuffer();
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    try {
      text = new TextDecoder("gb18030", { fatal: true }).decode(bytes);
      encoding = "gb18030";
    } catch {
      showNotice(errorBox, "error", "文件既不是 UTF-8 也不是 GBK 编码",
        "请在 Excel 里“另存为 → CSV UTF-8（逗号分隔）”或“CSV（逗号分隔）”后再导入。");
      return;
    }
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const { header, chunks, total } = splitImport(text);
  if (!header) {
    showNotice(errorBox, "error", "文件是空的", `第一行应为表头：${TEMPLATE.split("\n")[0]}`);
    return;
  }
  if (chunks.length === 0) chunks.push({ records: [], rows: 0 });
  const idColumn = header.fields.map((h) => h.trim().toLowerCase()).indexOf("device_id");
  const sum = { created: 0, unchanged: 0, updated: 0, reactivated: 0, rejected: [], retired: [], encoding };
  // For the rejected rows' file: each record by the line the server reports it at (its last line).
  const byLine = new Map();
  for (const chunk of chunks) for (const rec of chunk.records) byLine.set(rec.line + rec.lines - 1, rec);
  lastImport = { header, byLine, sum, ids: [] };
  // The server finds duplicates within one upload; across uploads only this page can. Device id →
  // the file line of the row that registered it (the last line of a row that spans several, as the
  // server counts).
  const accepted = new Map();
  let done = 0;
  progress(0, total);
  for (const [n, chunk] of chunks.entries()) {
    // A device id already accepted in an earlier chunk is a duplicate, as it would be in one upload;
    // its row is sent as blank lines, so that the server's line numbers stay the file's.
    const rejectedHere = [];
    const parts = [header.text];
    for (const rec of chunk.records) {
      const id = idColumn >= 0 ? (rec.fields[idColumn] || "").trim() : "";
      if (id && accepted.has(id) && !isBlank(rec)) {
        rejectedHere.push({ line: rec.line + rec.lines - 1, device_id: id, reason: `duplicate of line ${accepted.get(id)}` });
        parts.push("\n".repeat(rec.lines - 1));
      } else {
        parts.push(rec.text.replace(/\r\n?/g, "\n"));
      }
    }
    // The file line this upload's header stands for: its rows then carry their own line numbers.
    const first = chunk.records.length ? chunk.records[0].line : header.line + header.lines;
    const query = new URLSearchParams({ first_line: String(first - header.lines) });
    if ($("import-reactivate").checked) query.set("reactivate", "true");
    const r = await api(`/api/devices/import?${query}`, {
      method: "POST", body: parts.join("\n") + "\n", headers: { "content-type": "text/csv" },
    });
    if (!r.ok) {
      showError(errorBox, r, chunks.length > 1 ? `第 ${n + 1} 批（共 ${chunks.length} 批）导入失败` : "导入失败");
      if (done > 0) errorBox.append(el("span", { class: "raw" }, `此前 ${done} 行已处理。改正后重新导入整个文件即可，已导入的行会计为“未变”。`));
      break;
    }
    const report = r.data;
    sum.created += report.created;
    sum.unchanged += report.unchanged;
    sum.updated += report.updated;
    sum.reactivated += report.reactivated;
    const refused = new Set([...report.rejected, ...report.retired].map((e) => e.line));
    for (const rec of chunk.records) {
      const id = idColumn >= 0 ? (rec.fields[idColumn] || "").trim() : "";
      const last = rec.line + rec.lines - 1;
      if (id && !isBlank(rec) && !accepted.has(id) && !refused.has(last)) accepted.set(id, last);
    }
    sum.rejected.push(...rejectedHere, ...report.rejected);
    sum.retired.push(...report.retired);
    lastImport.ids = [...accepted.keys()];
    done += chunk.rows;
    progress(done, total);
    showSummary(sum);
  }
}

function progress(done, total) {
  $("import-progress").hidden = false;
  $("import-bar").max = Math.max(total, 1);
  $("import-bar").value = done;
  $("import-progress-text").textContent = `已处理 ${done.toLocaleString("zh-CN")} / ${total.toLocaleString("zh-CN")} 行`;
}

function showSummary(sum) {
  $("import-summary").hidden = false;
  $("sum-created").textContent = sum.created.toLocaleString("zh-CN");
  $("sum-unchanged").textContent = sum.unchanged.toLocaleString("zh-CN");
  $("sum-updated").textContent = sum.updated.toLocaleString("zh-CN");
  $("sum-reactivated").textContent = sum.reactivated.toLocaleString("zh-CN");
  $("sum-rejected").textContent = sum.rejected.length.toLocaleString("zh-CN");
  $("sum-retired").textContent = sum.retired.length.toLocaleString("zh-CN");
  $("import-encoding").textContent = sum.encoding === "gb18030" ? "文件按 GBK（GB18030）编码读取" : "文件按 UTF-8 编码读取";
  $("retired-block").hidden = sum.retired.length === 0;
  $("retired-rows").replaceChildren(...[...sum.retired].sort((a, b) => a.line - b.line).map((e) =>
    el("tr", { "data-line": e.line }, el("td", { class: "num" }, e.line), el("td", { class: "mono" }, e.device_id),
       el("td", { class: "reason" }, explain(e.reason) || e.reason))));
  $("import-credentials").hidden = lastImport === null || lastImport.ids.length === 0;
  $("import-credentials").textContent = `为本次导入的 ${fmtCount(lastImport ? lastImport.ids.length : 0)} 台设备发放接入凭据`;
  const rows = [...sum.rejected].sort((a, b) => a.line - b.line);
  $("rejected-block").hidden = rows.length === 0;
  $("rejected-rows").replaceChildren(...rows.map((e) => {
    const zh = explain(e.reason);
    return el("tr", { "data-line": e.line },
      el("td", { class: "num" }, e.line),
      el("td", { class: "mono" }, e.device_id || "—"),
      el("td", { class: "reason" }, zh || e.reason, zh ? el("div", { class: "muted small" }, e.reason) : ""));
  }));
}

// The rejected rows as a file to correct and import again: the header, each row as it was, and why.
let lastImport = null;

function csvField(text) {
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function downloadRejected() {
  if (!lastImport) return;
  const { header, byLine, sum } = lastImport;
  const lines = [`${header.text},${csvField("原因 reason")}`];
  for (const e of [...sum.rejected].sort((a, b) => a.line - b.line)) {
    const rec = byLine.get(e.line);
    const why = explain(e.reason) ? `${explain(e.reason)}（${e.reason}）` : e.reason;
    lines.push(`${rec ? rec.text.replace(/\r\n?/g, "\n") : csvField(e.device_id || "")},${csvField(`第 ${e.line} 行：${why}`)}`);
  }
  // With a BOM, so that Excel opens the Chinese correctly
  const url = URL.createObjectURL(new Blob(["\ufeff" + lines.join("\r\n") + "\r\n"], { type: "text/csv;charset=utf-8" }));
  const a = el("a", { href: url, download: "被拒绝的行.csv", hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function setupImport() {
  $("rejected-download").addEventListener("click", downloadRejected);
  $("import-credentials").addEventListener("click", () => {
    if (!lastImport || !lastImport.ids.length) return;
    openCredentials({ body: { device_ids: lastImport.ids }, text: `本次导入的设备`, file: "导入批次",
                      count: lastImport.ids.length });
  });
  $("template").textContent = TEMPLATE;
  // With a BOM, so that Excel opens the Chinese label correctly.
  $("template-download").href = URL.createObjectURL(new Blob(["\ufeff" + TEMPLATE], { type: "text/csv;charset=utf-8" }));
  $("import-file").addEventListener("change", () => {
    const file = $("import-file").files[0];
    $("import-file-name").textContent = file ? `${file.name}（${(file.size / 1024).toFixed(1)} KB）` : "未选择文件";
  });
  $("import-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const file = $("import-file").files[0];
    if (!file) { showNotice($("import-error"), "error", "请先选择 CSV 文件"); return; }
    const start = $("import-start");
    start.disabled = true;
    start.textContent = "导入中…";
    try {
      await runImport(file);
    } finally {
      start.disabled = false;
      start.textContent = "开始导入";
    }
  });
}

// -- 4. move and retire ---------------------------------------------------------------------------

let target = null;  // the device a dialog is about

function openMove(d) {
  target = d;
  $("move-device").textContent = d.device_id;
  $("move-from").textContent = `现在：${d.location.label || "未指定位置"}`;
  setPlace($("m-community"), $("m-building"), d.location.building_id, "请选择");
  $("m-floor").value = d.location.floor ?? "";
  $("m-unit").value = d.location.unit || "";
  $("m-label").value = d.label || "";
  floorLimit($("m-floor"), d.location.building_id);
  $("move-error").hidden = true;
  $("move-dialog").showModal();
}

function openRetire(d) {
  target = d;
  $("retire-device").textContent = d.device_id;
  $("retire-where").textContent = `${d.kind_label} · ${d.location.label || "未指定位置"}`;
  $("retire-reason").value = "";
  $("retire-confirm").checked = false;
  $("retire-submit").disabled = true;
  $("retire-error").hidden = true;
  $("retire-dialog").showModal();
}

function setupDialogs() {
  for (const button of document.querySelectorAll("dialog [data-close]")) {
    button.addEventListener("click", () => button.closest("dialog").close());
  }
  $("m-community").addEventListener("change", () => fillBuildings($("m-building"), $("m-community").value, "请选择"));
  $("m-building").addEventListener("change", () => floorLimit($("m-floor"), $("m-building").value));
  $("move-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!$("m-building").value) { showNotice($("move-error"), "error", "请选择楼栋"); return; }
    const floor = $("m-floor").value.trim();
    const body = { building_id: $("m-building").value, floor: floor === "" ? null : Number(floor),
                   unit: $("m-unit").value.trim(), label: $("m-label").value.trim() };
    $("move-submit").disabled = true;
    const r = await api(`/api/devices/${encodeURIComponent(target.device_id)}/move`, { method: "POST", json: body });
    $("move-submit").disabled = false;
    if (!r.ok) { showError($("move-error"), r, "移动失败"); return; }
    $("move-dialog").close();
    toast(`${r.data.device_id} 已移至 ${r.data.location.label}`);
    refreshList();
  });
  $("retire-confirm").addEventListener("change", () => { $("retire-submit").disabled = !$("retire-confirm").checked; });
  $("retire-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!$("retire-confirm").checked) return;
    if (!$("retire-reason").value.trim()) { showNotice($("retire-error"), "error", "请填写退役原因"); return; }
    $("retire-submit").disabled = true;
    const r = await api(`/api/devices/${encodeURIComponent(target.device_id)}/retire`, {
      method: "POST", json: { reason: $("retire-reason").value.trim() } });
    $("retire-submit").disabled = false;
    if (!r.ok) { showError($("retire-error"), r, "退役失败"); return; }
    $("retire-dialog").close();
    toast(`${r.data.device_id} 已退役`);
    refreshList();
  });
}

// -- 5. quarantine ------------------------------------------------------------------------------

let quarantineReason = "";  // the reason filter: "" for all
let quarantineHeld = [];

async function loadQuarantine() {
  const r = await api("/api/quarantine");
  if (!r.ok) { showError($("quarantine-error"), r, "无法读取未登记设备"); return; }
  $("quarantine-error").hidden = true;
  quarantineHeld = r.data;
  const count = $("quarantine-count");
  count.textContent = r.data.length;
  count.hidden = r.data.length === 0;
  count.classList.toggle("alert", r.data.some((q) => q.reason === "unregistered_device"));
  renderQuarantine();
}

// Counts per reason on the filter buttons; the table shows the chosen reason only.
function renderQuarantine() {
  for (const button of document.querySelectorAll("#quarantine-filter button")) {
    const reason = button.dataset.reason;
    const n = reason ? quarantineHeld.filter((q) => q.reason === reason).length : quarantineHeld.length;
    button.querySelector("b").textContent = n;
    button.classList.toggle("has", Boolean(n) && reason === "unregistered_device");
    button.setAttribute("aria-pressed", String(reason === quarantineReason));
  }
  const shown = quarantineHeld.filter((q) => !quarantineReason || q.reason === quarantineReason);
  $("quarantine-empty").hidden = shown.length > 0;
  $("quarantine-rows").replaceChildren(...shown.map((q) => el("tr", { "data-device-id": q.device_id, "data-reason": q.reason },
    el("td", { class: "mono" }, q.device_id),
    el("td", { class: "kind" }, KIND_LABEL[q.kind] || q.kind || "—"),
    el("td", { class: "reason" }, QUARANTINE_REASON[q.reason] || q.reason),
    el("td", { class: "num" }, q.messages),
    el("td", { title: fmtTime(q.first_seen_at) }, fmtTime(q.first_seen_at)),
    el("td", { class: "seen", "data-at": q.last_seen_at, title: fmtTime(q.last_seen_at) }, ago(q.last_seen_at)),
    el("td", { class: "actions" }, el("button", { type: "button", class: "small", "data-action": "register",
      onclick: () => prefillRegister({ device_id: q.device_id, kind: q.kind }) }, "登记")),
  )));
}

// -- 6. history --------------------------------------------------------------------------------

async function openHistory(deviceId) {
  $("history-device").textContent = deviceId;
  $("history-facts").replaceChildren();
  $("history-rows").replaceChildren();
  $("history-error").hidden = true;
  $("history-dialog").showModal();
  const id = encodeURIComponent(deviceId);
  const [device, entries] = await Promise.all([api(`/api/devices/${id}`), api(`/api/devices/${id}/history`)]);
  if (!device.ok || !entries.ok) { showError($("history-error"), device.ok ? entries : device, "无法读取设备履历"); return; }
  const d = device.data;
  const fact = (term, ...value) => [el("dt", {}, term), el("dd", {}, ...value)];
  $("history-facts").replaceChildren(
    ...fact("种类", d.kind_label),
    ...fact("位置", d.location.label || "未指定位置"),
    ...fact("备注标签", d.label || "—"),
    ...fact("状态", ...healthBadges(d)),
    ...fact("电量", d.battery_pct === null ? "—" : `${Math.round(d.battery_pct)}%`),
    ...fact("最后上报", d.last_seen_at ? `${fmtTime(d.last_seen_at)}（${ago(d.last_seen_at)}${d.last_type ? `，${d.last_type}` : ""}）` : "从未"),
    ...fact("登记时间", fmtTime(d.registered_at)),
    ...(d.retired_at ? fact("退役时间", fmtTime(d.retired_at)) : []),
  );
  $("history-rows").replaceChildren(...[...entries.data].reverse().map((h) => el("tr", { "data-action": h.action },
    el("td", {}, fmtTime(h.at)),
    el("td", { class: "action" }, HISTORY_ACTION[h.action] || h.action),
    el("td", {}, h.actor),
    el("td", {}, h.detail || "—"))));
}

// -- the page ----------------------------------------------------------------------------------

const TABS = ["list", "register", "import", "quarantine"];

function showTab(name) {
  if (!TABS.includes(name)) name = "list";
  for (const t of TABS) {
    $(`panel-${t}`).hidden = t !== name;
    $(`tab-${t}`).setAttribute("aria-selected", String(t === name));
  }
  if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
  if (name === "list") refreshList();
  if (name === "quarantine") loadQuarantine();
}

// -- 7. bulk credentials -------------------------------------------------------------------------
// POST /api/devices/credentials for the list's scope; the answer is a CSV of passwords shown this once: the page
// keeps it only as a download link while the dialog is open. Then it watches /api/broker-access until the broker
// has confirmed the generation that carries them.

let credentialsUrl = "", credentialsFile = "", credentialsFor = null;

function saveCredentials() {
  if (!credentialsUrl) return;
  const a = el("a", { href: credentialsUrl, download: credentialsFile, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
}

function credentialsScope() {
  const q = $("f-q").value.trim();
  if (q) {  // a search by id: exactly the devices the list shows (the credentials API has no id search)
    const ids = list.rows.filter((d) => d.lifecycle === "active").map((d) => d.device_id);
    return { body: { device_ids: ids }, text: `编号含“${q}”的设备`, file: `编号含${q}`, count: ids.length };
  }
  const kind = $("f-kind").value, community = $("f-community").value, building = $("f-building").value;
  const parts = [];
  if (kind) parts.push(KIND_LABEL[kind] || kind);
  if (building) parts.push(places.buildings.get(building)?.name || building);
  else if (community) parts.push(places.communities.get(community)?.name || community);
  const body = kind || community || building ? { kind, community_id: building ? "" : community, building_id: building }
                                              : { all: true };
  return { body, text: parts.length ? parts.join(" · ") : "全街道", file: parts.length ? parts.join("-") : "全街道" };
}

function forgetCredentials() {
  if (credentialsUrl) URL.revokeObjectURL(credentialsUrl);
  credentialsUrl = "";
  $("credentials-download").hidden = true;
}

// ``scope``: a device (its row's 凭据 button) or an import batch; none: the list's filters.
async function openCredentials(scope) {
  forgetCredentials();
  scope = scope && scope.body ? scope : credentialsScope();
  credentialsFor = scope;
  $("credentials-title").textContent = scope.single ? `发放接入凭据 ${scope.single}` : "批量发放接入凭据";
  $("credentials-single").hidden = true;
  $("credentials-scope").textContent = scope.text;
  $("credentials-count").textContent = "…";
  $("credentials-confirm").checked = false;
  $("credentials-submit").disabled = true;
  $("credentials-submit").hidden = false;
  $("credentials-error").hidden = true;
  $("credentials-result").hidden = true;
  $("credentials-dialog").showModal();
  if (scope.count !== undefined) { $("credentials-count").textContent = fmtCount(scope.count); return; }
  const params = new URLSearchParams(Object.entries({ kind: $("f-kind").value, community_id: $("f-community").value,
                                                      building_id: $("f-building").value }).filter(([, v]) => v));
  const r = await api(`/api/devices/counts?${params}`);
  $("credentials-count").textContent = r.ok ? fmtCount(r.data.total) : "?";
}

async function watchBrokerConfirm(generation, started) {
  const box = $("credentials-result");
  while ($("credentials-dialog").open) {
    const r = await api("/api/broker-access");
    if (r.ok && !r.data.managed) {
      showNotice(box, "warn", "接入服务器不由本系统管理", "请把凭据 CSV 交给接入服务器的管理员安装。");
      return;
    }
    if (r.ok && r.data.confirmed_generation >= generation) {
      showNotice(box, "ok", "已生效：设备现在可以用新凭据连接",
                 `接入服务器已确认（第 ${generation} 版，从生成到生效 ${((Date.now() - started) / 1000).toFixed(1)} 秒）。`);
      return;
    }
    if (r.ok && r.data.condition) {
      showNotice(box, "error", "接入服务器尚未确认这次变更", `${r.data.condition}：${r.data.condition_detail}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
}

// One device's credentials on screen too (shown this once), beside the file: what an installer types in.
function showSingleCredentials(text) {
  const [head, row] = text.trim().split(/\r?\n/).map((line) => line.split(","));
  if (!row) return;
  const value = Object.fromEntries(head.map((h, i) => [h, row[i]]));
  $("credentials-single").replaceChildren(
    el("dt", {}, "接入地址"), el("dd", { class: "mono", "data-field": "broker_url" }, value.broker_url),
    el("dt", {}, "用户名"), el("dd", { class: "mono", "data-field": "username" }, value.username),
    el("dt", {}, "密码"), el("dd", { class: "mono", "data-field": "password" }, value.password),
    el("dt", {}, "发布主题"), el("dd", { class: "mono", "data-field": "publish_filter" }, value.publish_filter));
  $("credentials-single").hidden = false;
}

function setupCredentials() {
  $("bulk-credentials").addEventListener("click", () => openCredentials());
  $("credentials-download").addEventListener("click", saveCredentials);
  $("credentials-confirm").addEventListener("change", () => {
    $("credentials-submit").disabled = !$("credentials-confirm").checked;
  });
  $("credentials-dialog").addEventListener("close", forgetCredentials);
  $("credentials-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!$("credentials-confirm").checked) return;
    const scope = credentialsFor || credentialsScope();
    const started = Date.now();
    $("credentials-submit").disabled = true;
    $("credentials-error").hidden = true;
    showNotice($("credentials-result"), "", "正在生成凭据…");
    let resp;
    try {
      resp = await fetch("/api/devices/credentials", { method: "POST", body: JSON.stringify(scope.body),
                                                      headers: { "content-type": "application/json" } });
    } catch (err) {
      $("credentials-result").hidden = true;
      showError($("credentials-error"), { status: 0, error: `无法连接服务器（${err.message}）` }, "生成失败");
      $("credentials-submit").disabled = false;
      return;
    }
    if (!resp.ok) {
      const data = await resp.json().catch(() => null);
      $("credentials-result").hidden = true;
      showError($("credentials-error"), { status: resp.status, error: detailText(resp.status, data) }, "生成失败");
      $("credentials-submit").disabled = false;
      return;
    }
    const count = Number(resp.headers.get("x-credentials-issued") || 0);
    const generation = Number(resp.headers.get("x-broker-generation") || 0);
    const text = await resp.text();
    credentialsUrl = URL.createObjectURL(new Blob([text], { type: "text/csv;charset=utf-8" }));
    credentialsFile = `设备接入凭据-${scope.file}.csv`;
    if (scope.single) showSingleCredentials(text);
    $("credentials-download").hidden = false;
    $("credentials-submit").hidden = true;
    saveCredentials();  // the one copy of the passwords: saved now; saving again works until the dialog closes
    showNotice($("credentials-result"), "", `已为 ${fmtCount(count)} 台设备生成凭据并下载`,
               "接入服务器确认中…（通常 1 秒内）");
    toast(`已为 ${fmtCount(count)} 台设备生成接入凭据`);
    await watchBrokerConfirm(generation, started);
  });
}

function setupQuarantine() {
  $("quarantine-refresh").addEventListener("click", loadQuarantine);
  for (const button of document.querySelectorAll("#quarantine-filter button")) {
    button.addEventListener("click", () => { quarantineReason = button.dataset.reason; renderQuarantine(); });
  }
}

async function start() {
  setupList();
  setupRegister();
  setupImport();
  setupDialogs();
  setupQuarantine();
  setupCredentials();
  for (const tab of document.querySelectorAll("[role=tab]")) tab.addEventListener("click", () => showTab(tab.dataset.tab));
  window.addEventListener("hashchange", () => showTab(location.hash.slice(1)));
  await Promise.all([loadHierarchy(), loadKinds()]);
  showTab(location.hash.slice(1));
  if (location.hash !== "#quarantine") loadQuarantine();
  setInterval(tickSeen, 15000);
  setInterval(() => {
    const busy = document.querySelector("dialog[open]") || document.hidden || $("panel-list").hidden;
    if (!busy) refreshList();
  }, REFRESH_MS);
}

start();
