// 街区地图: every building of the street on its block plan, coloured by its state now, live.
//
// The plan and the slow-moving part of each building's state (device faults, overdue
// rectifications) come from /api/map; incidents come over the same SSE stream as the wall
// (/api/stream: a snapshot on every (re)connect, then one event per change), so a building turns
// red the moment its incident opens. Device health changes with heartbeats, which raise no
// event: /api/map is read again a second after an incident change and every 30 seconds.
// Click a building for its risk profile. While the link is down the map says so.
//
// Pan and zoom come from Leaflet (vendored, dashboards/static/vendor/leaflet) with a plan coordinate
// system (L.CRS.Simple: one unit a metre of the street's plan, y down as on the plan): the plan is one
// SVG overlay, and the buildings' names are HTML labels placed after every move so that none covers
// another (buildings in trouble and the focused one first; the rest as room allows). ?focus=<building>
// (from the wall's drawer) centres the map on that building and marks it.
"use strict";
import { el, $ } from "./dom.js";

const STATE_ZH = { critical: "紧急警情", incident: "未结警情", fault: "设备故障", normal: "正常", no_devices: "未接入设备" };
const STATE_ORDER = ["critical", "incident", "fault", "normal", "no_devices"];
const SEVERITY_RANK = { critical: 3, high: 2, warning: 1, info: 0 };
const ACTIVE = new Set(["open", "acknowledged", "dispatched", "on_scene", "resolved"]);
const MAP_DEBOUNCE_MS = 1000;
const MAP_REFRESH_MS = 30000;
const RECONNECT_MS = 3000;
const LABEL_PX = 15;        // building labels on screen, whatever the plan's scale
const COMMUNITY_PX = 20;
const SVG_NS = "http://www.w3.org/2000/svg";

let street = null;                 // /api/map as last read
const incidents = new Map();       // id → active incident (from the stream)
const glyphs = new Map();          // building id → { g, rect, b }
let link = "connecting";
let scale = 1;                     // screen px per plan metre, at the zoom that shows the whole street
let map = null;                    // the Leaflet map (CRS.Simple)
let overlay = null;                // the plan, an SVG overlay on it
let labels = null;                 // the buildings' name labels (a layer group)
const focus = new URLSearchParams(location.search).get("focus") || "";
const LABEL_GAP_PX = 4;

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}


const profileUrl = (id) => `/ops/profile.html?b=${encodeURIComponent(id)}`;

// -- the plan ------------------------------------------------------------------------------------

// The median distance to the nearest other building: buildings are drawn a little smaller.
function glyphSize(buildings) {
  if (buildings.length < 2) return 40;
  const nearest = buildings.map((a) => {
    let best = Infinity;
    for (const b of buildings) if (b !== a) best = Math.min(best, Math.hypot(a.x - b.x, a.y - b.y));
    return best;
  }).filter((d) => d > 0).sort((a, b) => a - b);
  const median = nearest.length ? nearest[Math.floor(nearest.length / 2)] : 40;
  return Math.max(6, Math.min(60, median * 0.7));
}

function drawPlan() {
  const plan = $("plan");
  plan.replaceChildren();
  glyphs.clear();
  const buildings = street.buildings;
  if (!buildings.length) return;
  let w = glyphSize(buildings);
  const xs = buildings.map((b) => b.x), ys = buildings.map((b) => b.y);
  const box = $("leaflet-map").getBoundingClientRect();
  // The scale first (screen px per metre), so that names and the smallest building keep their size on screen.
  const spanX = Math.max(...xs) - Math.min(...xs) + w * 3, spanY = Math.max(...ys) - Math.min(...ys) + w * 3;
  scale = Math.min(box.width / spanX, box.height / (spanY * 1.12)) || 1;
  const px = (n) => n / scale;  // screen pixels in plan units
  w = Math.max(w, px(14));  // never smaller than 14 px: a building in trouble must be seen from across the room
  const h = w * 0.62;
  const pad = w * 1.5;
  const minX = Math.min(...xs) - pad, maxX = Math.max(...xs) + pad;
  const minY = Math.min(...ys) - pad - px(COMMUNITY_PX * 1.6), maxY = Math.max(...ys) + pad;
  plan.setAttribute("viewBox", `${minX} ${minY} ${maxX - minX} ${maxY - minY}`);
  plan.setAttribute("preserveAspectRatio", "xMidYMid meet");

  // Community blocks: the box around their buildings, named at the top.
  const byCommunity = new Map();
  for (const b of buildings) {
    if (!byCommunity.has(b.community_id)) byCommunity.set(b.community_id, []);
    byCommunity.get(b.community_id).push(b);
  }
  // Names go on top of every block (blocks of neighbouring communities may overlap), with a halo.
  const blocks = svg("g", { class: "blocks" }), names = svg("g", { class: "names" });
  for (const [cid, members] of byCommunity) {
    const cx = members.map((b) => b.x), cy = members.map((b) => b.y);
    const x0 = Math.min(...cx) - w * 0.75, x1 = Math.max(...cx) + w * 0.75;
    const y0 = Math.min(...cy) - h * 0.75 - px(COMMUNITY_PX * 1.3), y1 = Math.max(...cy) + h * 0.75;
    const community = members[0].community;
    blocks.append(svg("rect", { class: `block area-${members[0].area_id}`, x: x0, y: y0, width: x1 - x0, height: y1 - y0,
                                rx: px(8), "data-community": cid }));
    names.append(svg("text", { class: "community-name", x: x0 + px(6), y: y0 + px(COMMUNITY_PX * 1.05),
                               "font-size": px(COMMUNITY_PX), "stroke-width": px(4) }, community.replace(/居民区$/, "")));
  }
  plan.append(blocks);

  const stations = svg("g", { class: "stations" });
  for (const s of street.fire_stations) {
    if (!s.x && !s.y) continue;
    const r = px(15);
    stations.append(svg("g", { class: "station", transform: `translate(${s.x} ${s.y})` },
      svg("title", {}, s.name),
      svg("path", { d: `M0 ${-r} L${r} ${r * 0.8} L${-r} ${r * 0.8} Z` }),
      svg("text", { y: r * 0.62, "font-size": px(14), "text-anchor": "middle" }, "站")));
  }
  plan.append(stations);

  const layer = svg("g", { class: "buildings" });
  for (const b of buildings) {
    const rect = svg("rect", { x: b.x - w / 2, y: b.y - h / 2, width: w, height: h, rx: Math.min(w, h) * 0.12 });
    const g = svg("g", { class: "building", id: `b-${b.id}`, tabindex: "0", role: "link", "data-building": b.id,
                         "aria-label": `${b.community} ${b.name}` }, rect);
    if (b.id === focus) g.classList.add("focused");
    g.addEventListener("click", () => { location.href = profileUrl(b.id); });
    g.addEventListener("keydown", (e) => { if (e.key === "Enter") location.href = profileUrl(b.id); });
    g.addEventListener("mouseenter", (e) => showTip(b.id, e));
    g.addEventListener("mousemove", (e) => moveTip(e));
    g.addEventListener("mouseleave", () => { $("tip").hidden = true; });
    layer.append(g);
    glyphs.set(b.id, { g, rect, b });
  }
  plan.append(layer, names);
  showOnMap(minX, minY, maxX, maxY);
}

// The plan on the Leaflet map: a point (x, y) of the plan is LatLng(-y, x), so north stays up.
const at = (x, y) => L.latLng(-y, x);

function showOnMap(minX, minY, maxX, maxY) {
  const bounds = L.latLngBounds(at(minX, maxY), at(maxX, minY));
  if (!map) {
    map = L.map("leaflet-map", { crs: L.CRS.Simple, zoomSnap: 0.25, zoomDelta: 0.5, attributionControl: false,
                                 minZoom: -8, maxZoom: 8, zoomControl: true });
    labels = L.layerGroup().addTo(map);
    map.on("zoomend moveend", placeLabels);
  }
  if (overlay) overlay.remove();
  overlay = L.svgOverlay($("plan"), bounds, { interactive: true }).addTo(map);
  map.fitBounds(bounds);
  const fit = map.getZoom();
  map.setMinZoom(fit - 0.5);
  map.setMaxZoom(fit + 6);
  const target = focus && street.buildings.find((b) => b.id === focus);
  if (target) map.setView(at(target.x, target.y), fit + 2);
  placeLabels();
}

// Names of the buildings in view, none over another: greedy, in order of what matters (the focused building,
// then critical, incident, fault, the rest by name); a name that would touch one already placed waits for a
// closer zoom. Labels are HTML, in screen pixels, whatever the zoom.
function placeLabels() {
  if (!map || !labels) return;
  labels.clearLayers();
  const view = map.getBounds().pad(0.05);
  const rank = (g) => (g.b.id === focus ? -1 : STATE_ORDER.indexOf(g.g.dataset.state || "normal"));
  const candidates = [...glyphs.values()].filter((g) => view.contains(at(g.b.x, g.b.y)))
    .sort((p, q) => rank(p) - rank(q) || (p.b.id < q.b.id ? -1 : 1));
  const placed = [];
  for (const g of candidates) {
    const text = g.b.name.replace(/^\S+\s/, "");
    const pt = map.latLngToContainerPoint(at(g.b.x, g.b.y));
    const w = text.length * LABEL_PX + 10, h = LABEL_PX + 8;
    const box = { x0: pt.x - w / 2, y0: pt.y + 8, x1: pt.x + w / 2, y1: pt.y + 8 + h };
    if (placed.some((o) => box.x0 < o.x1 + LABEL_GAP_PX && o.x0 < box.x1 + LABEL_GAP_PX
                         && box.y0 < o.y1 + LABEL_GAP_PX && o.y0 < box.y1 + LABEL_GAP_PX)) continue;
    placed.push(box);
    const node = el("span", { class: "b-label", "data-building": g.b.id, "data-state": g.g.dataset.state || "" }, text);
    if (g.b.id === focus) node.classList.add("focused");
    labels.addLayer(L.marker(at(g.b.x, g.b.y), { interactive: false, keyboard: false,
      icon: L.divIcon({ className: "b-label-icon", html: node, iconSize: null, iconAnchor: [w / 2, -8] }) }));
  }
  window.wanliLabels = placed.length;
  window.wanliLabelsInView = candidates.length;  // buildings in view: the tests compare how many got their name
}

// -- state ---------------------------------------------------------------------------------------

// The server's view of a building, with its incidents taken from the stream (fresher than /api/map).
function stateOf(b) {
  const mine = [...incidents.values()].filter((i) => i.location.building_id === b.id && ACTIVE.has(i.state));
  mine.sort((x, y) => (SEVERITY_RANK[y.severity] - SEVERITY_RANK[x.severity]) || (Date.parse(x.opened_at) - Date.parse(y.opened_at)));
  const critical = mine.filter((i) => i.severity === "critical").length;
  const state = critical ? "critical" : mine.length ? "incident" : b.faults ? "fault" : b.devices ? "normal" : "no_devices";
  const top = mine.length ? `${mine[0].drill ? "【演练】" : ""}${mine[0].title}` : "";  // a drill's says so
  return { state, active: mine.length, critical, top };
}

function paint() {
  if (!street) return;
  const counts = Object.fromEntries(STATE_ORDER.map((s) => [s, 0]));
  const watch = [];
  for (const [id, { g, b }] of glyphs) {
    const s = stateOf(b);
    counts[s.state] += 1;
    if (g.dataset.state !== s.state) {
      g.dataset.state = s.state;
      if (s.state === "critical" || s.state === "incident") g.parentNode.append(g);  // on top of its neighbours
    }
    g.dataset.active = String(s.active);
    if (s.state !== "normal" && s.state !== "no_devices" || b.overdue) watch.push({ b, s });
    glyphs.get(id).s = s;
  }
  for (const s of STATE_ORDER) $(`n-${s}`).textContent = counts[s];
  if (labelsStale(counts)) placeLabels();
  watch.sort((x, y) => STATE_ORDER.indexOf(x.s.state) - STATE_ORDER.indexOf(y.s.state)
    || y.s.active - x.s.active || y.b.faults - x.b.faults || (x.b.id < y.b.id ? -1 : 1));
  $("watch").replaceChildren(...watch.slice(0, 40).map(({ b, s }) => el("li", { "data-state": s.state, "data-building": b.id },
    el("a", { href: profileUrl(b.id) }, el("i"), el("span", { class: "name" }, `${b.community.replace(/居民区$/, "")} ${b.name.replace(/^\S+\s/, "")}`)),
    el("span", { class: "why" }, s.top || [b.faults ? `${b.faults} 台设备故障` : "", b.overdue ? `${b.overdue} 项整改超期` : ""]
      .filter(Boolean).join("，")))));
  $("watch-empty").hidden = watch.length > 0;
}

// Labels are placed again when the buildings' states change (a building in trouble takes its name first).
let lastCounts = "";
function labelsStale(counts) {
  const key = JSON.stringify(counts);
  if (key === lastCounts) return false;
  lastCounts = key;
  return true;
}

function showTip(id, e) {
  const { b, s } = glyphs.get(id);
  const tip = $("tip");
  tip.replaceChildren(
    el("b", {}, `${b.community} ${b.name}`),
    el("span", { class: `state ${s.state}` }, STATE_ZH[s.state]),
    el("span", {}, `${b.floors} 层 · 设备 ${b.devices} 台${b.faults ? `，故障 ${b.faults} 台` : ""}`),
    ...(s.active ? [el("span", {}, `未结警情 ${s.active} 起：${s.top}`)] : []),
    ...(b.overdue ? [el("span", {}, `整改超期 ${b.overdue} 项`)] : []),
    el("span", { class: "muted" }, "点击查看风险画像"));
  tip.hidden = false;
  moveTip(e);
}

function moveTip(e) {
  const tip = $("tip"), wrap = tip.parentElement.getBoundingClientRect();
  const x = Math.min(e.clientX - wrap.left + 16, wrap.width - tip.offsetWidth - 8);
  tip.style.left = `${Math.max(8, x)}px`;
  tip.style.top = `${e.clientY - wrap.top + 16}px`;
}

// -- the server --------------------------------------------------------------------------------

let mapTimer = 0;
async function loadMap() {
  try {
    const resp = await fetch("/api/map");
    if (!resp.ok) return;
    const fresh = await resp.json();
    const replot = !street || fresh.buildings.length !== street.buildings.length
      || fresh.buildings.some((b, i) => b.id !== street.buildings[i].id || b.x !== street.buildings[i].x || b.y !== street.buildings[i].y);
    street = fresh;
    if (replot) drawPlan(); else for (const b of street.buildings) if (glyphs.has(b.id)) glyphs.get(b.id).b = b;
    paint();
  } catch { /* the link indicator says the server is away */ }
}

function mapSoon() {
  if (!mapTimer) mapTimer = setTimeout(() => { mapTimer = 0; loadMap(); }, MAP_DEBOUNCE_MS);
}

let source = null;
let retryTimer = 0;

function setLink(state) {
  link = state;
  $("link").textContent = state === "up" ? "实时连接" : state === "down" ? "连接中断，重连中…" : "连接中…";
  $("link").className = state === "up" ? "link up" : "link down";
  document.body.classList.toggle("offline", state === "down");
  document.body.classList.toggle("connecting", state === "connecting");
  $("offline-note").hidden = state !== "down";
}

function connect() {
  clearTimeout(retryTimer);
  if (source) source.close();
  const s = new EventSource("/api/stream");
  source = s;
  const current = (handler) => (e) => { if (s === source) handler(e); };
  s.addEventListener("error", current(() => {
    setLink("down");
    if (s.readyState === EventSource.CLOSED) { s.close(); retryTimer = setTimeout(connect, RECONNECT_MS); }
  }));
  s.addEventListener("snapshot", current((e) => {
    incidents.clear();
    for (const inc of JSON.parse(e.data).incidents) incidents.set(inc.id, inc);
    setLink("up");
    paint();
    mapSoon();
  }));
  s.addEventListener("incident", current((e) => {
    const { incident } = JSON.parse(e.data);
    const held = incidents.get(incident.id);
    if (held && Date.parse(held.updated_at) > Date.parse(incident.updated_at)) return;
    if (ACTIVE.has(incident.state)) incidents.set(incident.id, incident); else incidents.delete(incident.id);
    paint();
    mapSoon();
  }));
}

function tick() {
  $("clock").textContent = new Date().toLocaleTimeString("zh-CN", { hour12: false });
}

let resizeTimer = 0;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => { if (map) { map.invalidateSize(); placeLabels(); } }, 200);
});

loadMap().then(connect);
tick();
setInterval(tick, 1000);
setInterval(() => { if (link === "up") loadMap(); }, MAP_REFRESH_MS);
