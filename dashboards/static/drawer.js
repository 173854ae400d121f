// The incident drawer, shared by the wall and the history page: click a row, and everything the
// next step needs is in one panel on the right:
//   - the whole timeline: each audit step (who, from which state to which, the note) and each
//     notice (recipient, channel, sent / failed / pending, time), in time order;
//   - the escalation steps with who each tells and the current step's deadline;
//   - the people to call with their phone numbers (the server sends numbers only to operators);
//   - "在地图上显示" (the map focuses the building), a note, merge into a group, split a member out.
// It reads /api/incidents/{id} (with its audit), …/notifications, …/escalation and …/contacts.
// No inline script or handler anywhere (the pages run under a strict Content-Security-Policy).
"use strict";
import { el, $ } from "./dom.js";
import { SEVERITY, STATE } from "./labels.js";
(() => {
  const ACTION = { open: "发现并上报", notify: "通知", escalate: "升级", acknowledge: "确认", dispatch: "派单",
                   arrive: "到场", resolve: "处置完毕", verify: "核查结案", false_alarm: "标记误报", merge: "合并",
                   merge_in: "并入", note: "备注", silence: "静音提示音", follow_group: "随群组", split: "拆出",
                   stand_down: "撤销派单", escalate_severity: "升级级别", downgrade_severity: "降低级别" };
  const STEP_STATUS = { done: "已通知", current: "进行中", next: "未到", stopped: "已停止（有人响应）" };
  const ACTIVE = new Set(["open", "acknowledged", "dispatched", "on_scene", "resolved"]);
  const NEXT = { open: ["acknowledge", "确认"], acknowledged: ["dispatch", "派单"], dispatched: ["arrive", "到场"],
                 on_scene: ["resolve", "处置完毕"], resolved: ["verify", "核查结案"] };

  const time = (iso) => (iso ? new Date(iso).toLocaleString("zh-CN", { hour12: false, month: "2-digit", day: "2-digit",
                                                                       hour: "2-digit", minute: "2-digit", second: "2-digit" }) : "");
  const enc = encodeURIComponent;

  let current = null;      // the incident shown
  let loading = 0;         // a newer load wins
  let countdownTimer = 0;

  function build() {
    if ($("drawer")) return;
    const aside = el("aside", { id: "drawer", class: "drawer", "aria-label": "警情详情", hidden: "" },
      el("div", { class: "drawer-head" },
        el("span", { id: "drawer-badge", class: "badge" }),
        el("h2", { id: "drawer-title" }),
        el("button", { type: "button", id: "drawer-close", class: "secondary", onclick: close }, "关闭")),
      el("div", { class: "drawer-body" },
        el("dl", { id: "drawer-facts", class: "facts" }),
        el("div", { class: "drawer-actions" },
          el("button", { type: "button", id: "drawer-step", class: "step", onclick: step }),
          el("button", { type: "button", id: "drawer-false", class: "secondary", onclick: falseAlarm }, "误报"),
          el("a", { id: "drawer-map", class: "button-link", href: "#" }, "在地图上显示"),
          el("a", { id: "drawer-profile", class: "button-link secondary", href: "#", target: "_blank", rel: "noopener" }, "楼栋画像")),
        el("section", { id: "drawer-group", class: "group", hidden: "" },
          el("h3", {}, "群组包含的设备"), el("ul", { id: "drawer-members", class: "members" })),
        el("section", { id: "drawer-merge-box", hidden: "" },
          el("h3", {}, "合并到群组警情"),
          el("div", { class: "row" }, el("select", { id: "drawer-merge-into", "aria-label": "并入的群组警情" }),
             el("button", { type: "button", id: "drawer-merge", onclick: merge }, "合并"))),
        el("section", {},
          el("h3", {}, "需要联系的人"), el("table", { class: "contacts" }, el("tbody", { id: "drawer-contacts" }))),
        el("section", {},
          el("h3", {}, "升级步骤"), el("ol", { id: "drawer-steps", class: "steps" })),
        el("section", {},
          el("h3", {}, "处置时间线"), el("ol", { id: "drawer-timeline", class: "timeline" })),
        el("section", {},
          el("h3", {}, "添加备注"),
          el("textarea", { id: "drawer-note", rows: "2", maxlength: "2000", placeholder: "如：已电话联系楼组长，正在上楼查看" }),
          el("div", { class: "row" }, el("button", { type: "button", id: "drawer-note-save", onclick: saveNote }, "保存备注")))));
    document.body.append(aside);
    document.addEventListener("keydown", (e) => { if (e.key === "Escape" && !aside.hidden) close(); });
  }

  function close() {
    $("drawer").hidden = true;
    current = null;
    clearInterval(countdownTimer);
    document.body.classList.remove("drawer-open");
  }

  async function getJson(url) {
    const resp = await fetch(url);
    if (!resp.ok) throw new Error(`${resp.status} ${url}`);
    return resp.json();
  }

  async function open(id) {
    build();
    const mine = ++loading;
    $("drawer").hidden = false;
    document.body.classList.add("drawer-open");
    $("drawer").dataset.incident = id;
    let detail, notices, steps, contacts;
    try {
      [detail, notices, steps, contacts] = await Promise.all([
        getJson(`/api/incidents/${enc(id)}`), getJson(`/api/incidents/${enc(id)}/notifications`),
        getJson(`/api/incidents/${enc(id)}/escalation`), getJson(`/api/incidents/${enc(id)}/contacts`)]);
    } catch (err) {
      if (mine === loading) $("drawer-title").textContent = `读取失败：${err.message}`;
      return;
    }
    if (mine !== loading) return;
    current = detail;
    show(detail, notices, steps, contacts);
    $("drawer").dataset.loaded = id;
  }

  function show(inc, notices, steps, contacts) {
    const badge = $("drawer-badge");
    badge.className = `badge ${inc.severity}`;
    badge.textContent = SEVERITY[inc.severity] || inc.severity;
    $("drawer-title").textContent = inc.drill ? `【演练】${inc.title}` : inc.title;
    $("drawer-title").classList.toggle("drill", !!inc.drill);
    const facts = [
      ["位置", inc.location.label], ["对象", inc.subject], ["状态", `${STATE[inc.state] || inc.state}${inc.acknowledged_by ? `（确认人 ${inc.acknowledged_by}）` : ""}`],
      ["发生", time(inc.opened_at)], ["次数", String(inc.event_count)], ["说明", inc.detail], ["编号", inc.id]];
    if (inc.drill) facts.unshift(["演练", "模拟设备引发：只通知演练联系人与模拟微型消防站，不计入考核指标和风险画像"]);
    if (inc.closed_at) facts.splice(4, 0, ["结束", time(inc.closed_at)]);
    $("drawer-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));

    const building = inc.location.building_id;
    const map = $("drawer-map");
    map.hidden = !building;
    map.href = building ? `/ops/map.html?focus=${enc(building)}` : "#";
    $("drawer-profile").hidden = !building;
    $("drawer-profile").href = building ? `/ops/profile.html?b=${enc(building)}` : "#";

    const active = ACTIVE.has(inc.state);
    const next = NEXT[inc.state];
    $("drawer-step").hidden = !next;
    if (next) { $("drawer-step").textContent = next[1]; $("drawer-step").dataset.action = next[0]; }
    $("drawer-false").hidden = !active;
    $("drawer-false").textContent = "误报";
    delete $("drawer-false").dataset.confirming;
    const isGroup = !!(inc.scope && inc.members.length);
    $("drawer-group").hidden = !isGroup;
    $("drawer-members").replaceChildren(...(isGroup ? inc.members : []).map((device) => el("li", {},
      el("span", {}, device),
      active && inc.members.length > 1
        ? el("button", { type: "button", class: "secondary split", "data-device": device,
                         title: "把这台设备拆出群组，单独处置", onclick: () => split(inc.id, device) }, "拆出")
        : null)));
    fillMerge(inc);

    $("drawer-contacts").replaceChildren(...(contacts.length ? contacts.map((c) => el("tr", {},
      el("td", {}, c.group), el("td", {}, c.role_zh), el("td", {}, c.name),
      el("td", { class: "phone" }, c.phone === null ? "（无权查看电话）"
        : c.phone ? el("a", { href: `tel:${c.phone}` }, c.phone) : "（未登记电话）")))
      : [el("tr", {}, el("td", { colspan: "4" }, inc.drill ? "演练：没有演练联系人（请勿拨打真实电话）" : "没有登记的联系人"))]));

    $("drawer-steps").replaceChildren(...steps.map((s) => el("li", { class: `step ${s.status}` },
      el("b", {}, `第${s.step + 1}级 · ${s.tiers_zh.join("、")}`),
      s.roles_zh.length ? `（${s.roles_zh.join("、")}）` : "",
      s.fire_station ? " · 派微型消防站" : "", s.household ? " · 通知家属" : "",
      el("span", { class: "limit" }, ` · ${Math.round(s.ack_within_s / 60)} 分钟内确认`),
      el("span", { class: "status" }, STEP_STATUS[s.status] || s.status),
      s.deadline_at ? el("span", { class: "deadline", "data-at": s.deadline_at }, "") : null)));
    clearInterval(countdownTimer);
    tickDeadlines();
    countdownTimer = setInterval(tickDeadlines, 1000);

    const entries = [
      ...inc.audit.map((a) => ({ at: a.at, node: el("li", { class: `audit ${a.action}` },
        el("time", {}, time(a.at)), el("b", {}, ACTION[a.action] || a.action), ` ${a.actor}`,
        a.from_state && a.from_state !== a.to_state ? ` · ${STATE[a.from_state] || a.from_state} → ${STATE[a.to_state] || a.to_state}` : "",
        a.note ? el("div", { class: "note" }, a.note) : null) })),
      ...notices.map((n) => ({ at: n.created_at, node: noticeItem(n) })),
    ].sort((x, y) => Date.parse(x.at) - Date.parse(y.at));
    $("drawer-timeline").replaceChildren(...entries.map((e) => e.node));
  }

  // One notice: whom, by which channel, sent / failed / waiting. Per-attempt records (status, error) show when the
  // server sends them.
  function noticeItem(n) {
    const status = n.status || (n.sent_at ? "sent" : n.last_error || n.error ? "failed" : "pending");
    const zh = { sent: "已送达", delivered: "已送达", failed: "发送失败", pending: "发送中" }[status] || status;
    return el("li", { class: `notice-item ${status}` },
      el("time", {}, time(n.sent_at || n.created_at)),
      el("b", {}, `通知 ${n.recipient}`), ` · ${n.tier_zh || n.tier} ${n.role_zh || n.role}`,
      ` · ${n.channel}`, el("span", { class: `sent ${status}` }, ` · ${zh}`),
      n.dispatch_id ? ` · 派单 ${n.dispatch_id}` : "", n.last_error || n.error ? el("div", { class: "note" }, n.last_error || n.error) : null);
  }

  function tickDeadlines() {
    for (const node of document.querySelectorAll("#drawer-steps .deadline")) {
      const s = Math.round((Date.parse(node.dataset.at) - Date.now()) / 1000);
      node.textContent = s > 0 ? ` · ${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")} 后升级（${time(node.dataset.at)}）`
        : ` · 已到期（${time(node.dataset.at)}）`;
    }
  }

  async function fillMerge(inc) {
    const box = $("drawer-merge-box");
    box.hidden = true;
    if (inc.scope || !["open", "acknowledged"].includes(inc.state)) return;
    let groups = [];
    try {
      groups = (await getJson("/api/incidents?active=true&limit=1000"))
        .filter((g) => g.scope && g.members.length && g.id !== inc.id && g.category === inc.category);
    } catch { return; }
    if (!current || current.id !== inc.id || !groups.length) return;
    const near = (g) => (g.location.building_id === inc.location.building_id ? 0 : 1);
    groups.sort((a, b) => near(a) - near(b));
    $("drawer-merge-into").replaceChildren(...groups.map((g) => el("option", { value: g.id }, `${g.title} · ${g.subject}`)));
    box.hidden = false;
  }

  async function post(url, body, done) {
    const resp = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" },
                                    body: JSON.stringify(body) }).catch(() => null);
    if (!resp || !resp.ok) {
      const detail = resp ? await resp.json().then((b) => b.detail).catch(() => resp.status) : "无法连接服务器";
      say(`操作未执行：${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
      return null;
    }
    say(done, true);
    return resp.json();
  }

  function say(text, ok = false) {
    let box = $("drawer-say");
    if (!box) { box = el("p", { id: "drawer-say", role: "status" }); $("drawer").querySelector(".drawer-head").after(box); }
    box.className = ok ? "say ok" : "say error";
    box.textContent = text;
  }

  async function step() {
    const action = $("drawer-step").dataset.action;
    if (!current || !action) return;
    $("drawer-step").disabled = true;
    const id = current.id;
    const done = await post(`/api/incidents/${enc(id)}/actions`, { action }, `已${$("drawer-step").textContent}`);
    $("drawer-step").disabled = false;
    if (done) open(id);
  }

  // 误报 ends the incident (and stands a dispatched station down): a second click confirms.
  async function falseAlarm() {
    const button = $("drawer-false");
    if (!current) return;
    if (!button.dataset.confirming) {
      button.dataset.confirming = "1";
      button.textContent = "确认误报？（再点一次）";
      return;
    }
    const id = current.id;
    if (await post(`/api/incidents/${enc(id)}/actions`, { action: "false_alarm" }, "已标记误报")) open(id);
  }

  async function saveNote() {
    const text = $("drawer-note").value.trim();
    if (!current || !text) { $("drawer-note").focus(); return; }
    if (await post(`/api/incidents/${enc(current.id)}/actions`, { action: "note", note: text }, "备注已保存")) {
      $("drawer-note").value = "";
      open(current.id);
    }
  }

  async function merge() {
    const into = $("drawer-merge-into").value;
    if (!current || !into) return;
    const id = current.id;
    if (await post(`/api/incidents/${enc(id)}/actions`, { action: "merge", into }, `已并入 ${into}`)) open(id);
  }

  async function split(groupId, device) {
    if (await post(`/api/incidents/${enc(groupId)}/split`, { device_id: device }, `设备 ${device} 已拆出，单独处置`)) {
      open(groupId);
    }
  }

  // The wall tells the drawer of every change; the one shown is read again.
  function changed(inc) {
    if (current && inc.id === current.id && inc.updated_at !== current.updated_at) open(inc.id);
  }

  window.WanliDrawer = { open, close, changed };
})();
