// 历史警情: ended incidents (closed, false alarm, merged) searched by time, community, building, device kind,
// severity, outcome and words; each row opens the same drawer as the wall; the CSV link exports what is shown.
"use strict";
import { el, $ } from "./dom.js";
import { SEVERITY } from "./labels.js";
(() => {
  const OUTCOME = { closed: "已结案", false_alarm: "误报", merged: "已合并" };
  const FIELDS = ["since", "until", "community", "building", "kind", "severity", "outcome", "q"];
  let hierarchy = null;

  const time = (iso) => (iso ? new Date(iso).toLocaleString("zh-CN", { hour12: false }) : "");

  // The form as query parameters of the API (datetime-local is the browser's local time: sent with its offset).
  function query() {
    const p = new URLSearchParams();
    for (const id of FIELDS) {
      const node = $(id);
      if (!node.value) continue;
      const name = node.name;
      p.set(name, node.type === "datetime-local" ? new Date(node.value).toISOString() : node.value.trim());
    }
    return p;
  }

  async function search(e) {
    if (e) e.preventDefault();
    const p = query();
    $("csv").href = `/api/incidents/history.csv?${p}`;
    history.replaceState(null, "", `?${p}`);
    $("summary").textContent = "查询中…";
    const resp = await fetch(`/api/incidents/history?${p}`).catch(() => null);
    if (!resp || !resp.ok) {
      const body = resp ? await resp.json().catch(() => ({})) : {};
      $("summary").textContent = `查询失败：${body.detail || (resp ? resp.status : "无法连接服务器")}`;
      return;
    }
    const list = await resp.json();
    $("summary").textContent = list.length ? `共 ${list.length} 条已结束的警情${list.length >= 500 ? "（只列出最新 500 条，请缩小范围）" : ""}`
      : "没有符合条件的已结束警情";
    $("rows").replaceChildren(...list.map((i) => el("tr", { id: `h-${i.id}`, "data-id": i.id },
      el("td", {}, time(i.opened_at)),
      el("td", {}, el("span", { class: `badge ${i.severity}` }, SEVERITY[i.severity] || i.severity)),
      el("td", {}, i.drill ? el("span", { class: "drill-tag", title: "演练事件：由模拟设备引发" }, "演练") : "", i.title),
      el("td", {}, i.location.label), el("td", {}, i.subject),
      el("td", { class: `outcome-${i.state}` }, OUTCOME[i.state] || i.state), el("td", {}, time(i.closed_at)),
      el("td", {}, i.acknowledged_by || "—"))));
  }

  function fillPlaces() {
    const communities = hierarchy.areas.flatMap((a) => a.communities);
    $("community").append(...communities.map((c) => el("option", { value: c.id }, c.name)));
    const buildings = () => {
      const chosen = $("community").value;
      const list = communities.filter((c) => !chosen || c.id === chosen).flatMap((c) => c.buildings);
      const keep = $("building").value;
      $("building").replaceChildren(el("option", { value: "" }, "全部"), ...list.map((b) => el("option", { value: b.id }, b.name)));
      if (list.some((b) => b.id === keep)) $("building").value = keep;
    };
    $("community").addEventListener("change", buildings);
    buildings();
  }

  async function start() {
    const [h, kinds] = await Promise.all([
      fetch("/api/hierarchy").then((r) => r.json()).catch(() => null),
      fetch("/api/device-kinds").then((r) => (r.ok ? r.json() : [])).catch(() => [])]);
    if (h) { hierarchy = h; fillPlaces(); }
    $("kind").append(...(Array.isArray(kinds) ? kinds : []).map((k) => el("option", { value: k.name }, k.label_zh)));
    const given = new URLSearchParams(location.search);
    for (const id of FIELDS) {
      const v = given.get($(id).name);
      if (v) $(id).value = $(id).type === "datetime-local" ? toLocalInput(v) : v;
    }
    $("search").addEventListener("submit", search);
    $("rows").addEventListener("click", (e) => {
      const tr = e.target.closest("tr[data-id]");
      if (tr) window.WanliDrawer.open(tr.dataset.id);
    });
    search();
  }

  function toLocalInput(iso) {
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return "";
    const pad = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }

  start();
})();
