// Reaching people (docs/incidents.md "Dispatch"): an incident's attempts, people's contact points and the rules.
"use strict";
(() => {
  const STATUS = { queued: "待发", standby: "备用", sending: "发送中", sent: "已发出", delivered: "已送达",
                   answered: "已应答", failed: "失败", cancelled: "已取消" };
  const CHANNEL = { voice: "电话", sms: "短信", wecom: "企业微信", dingtalk: "钉钉", feishu: "飞书", email: "邮件", mqtt: "MQTT",
                    webhook: "城运平台" };
  const STATE = { open: "待确认", acknowledged: "已确认", dispatched: "已派单", on_scene: "已到场", resolved: "已处置",
                  closed: "已结案", false_alarm: "误报", merged: "已合并" };
  const URGENCY = { critical: "紧急", high: "重要", low: "一般" };
  const $ = (id) => document.getElementById(id);

  function say(text) { $("message").textContent = text || ""; }

  async function api(path, options = {}) {
    const resp = await fetch(path, { headers: { "content-type": "application/json" }, ...options });
    const data = await resp.json().catch(() => null);
    if (!resp.ok) throw new Error(data && data.detail ? (typeof data.detail === "string" ? data.detail
      : JSON.stringify(data.detail)) : `HTTP ${resp.status}`);
    return data;
  }

  const cell = window.wanliCell;  // session.js

  function time(iso) {
    if (!iso) return "";
    return new Date(iso).toLocaleTimeString("zh-CN", { timeZone: "Asia/Shanghai", hour12: false });
  }

  // --- an incident's attempts
  let watching = "";
  let attemptsFailed = false;
  async function showAttempts() {
    if (!watching) return;
    try {
      const [incident, rows] = await Promise.all([api(`/api/incidents/${encodeURIComponent(watching)}`),
        api(`/api/incidents/${encodeURIComponent(watching)}/notifications`)]);
      $("incident-summary").textContent =
        `${incident.title} · ${incident.location ? incident.location.label : ""} · ${STATE[incident.state] || incident.state}`;
      const body = $("attempts").tBodies[0];
      body.replaceChildren();
      for (const r of rows.filter((x) => x.attempt_id !== null)) {
        const tr = body.insertRow();
        cell(tr, time(r.due_at || r.created_at));
        cell(tr, r.step + 1, "num");
        const who = r.recipient.startsWith(r.role_zh) ? r.recipient : `${r.role_zh} ${r.recipient}`;
        cell(tr, r.drill ? `【演练】${who}` : who, r.drill ? "drill" : "");
        cell(tr, CHANNEL[r.channel] || r.channel);
        cell(tr, r.address, "mono");
        const st = cell(tr, "");
        const badge = document.createElement("span");
        badge.className = `status ${r.status}`;
        badge.textContent = STATUS[r.status] || r.status;
        st.append(badge);
        cell(tr, time(r.sent_at));
        cell(tr, time(r.delivered_at));
        cell(tr, r.answered_at ? `${time(r.answered_at)} ${r.answer}` : "");
        cell(tr, r.error, "small muted");
      }
      $("attempts").hidden = false;
      if (attemptsFailed) say("");  // only its own complaint: a rule or contact point just saved keeps its word
      attemptsFailed = false;
    } catch (err) { attemptsFailed = true; say(`事件 ${watching}：${err.message}`); }
  }

  $("incident-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    watching = $("incident-id").value.trim();
    history.replaceState(null, "", `#incident=${encodeURIComponent(watching)}`);
    showAttempts();
  });

  // --- people
  async function showPeople() {
    const people = await api("/api/notify/people");
    const body = $("people").tBodies[0];
    body.replaceChildren();
    for (const p of people) {
      const tr = body.insertRow();
      cell(tr, p.person);
      cell(tr, p.role_zh);
      cell(tr, p.contact_points.map((c) => `${c.kind} ${c.address}${c.drill ? "（演练）" : ""}`
        + (c.source === "street_data" ? "（街道数据）" : "")).join("\n"), "small");
      const edit = tr.insertCell();
      const area = document.createElement("textarea");
      area.setAttribute("aria-label", `${p.person} 的联系方式`);
      area.value = p.contact_points.filter((c) => c.source === "operator" && !["wecom", "dingtalk", "feishu"].includes(c.kind))
        .map((c) => `${c.kind} ${c.address}`).join("\n");
      edit.append(area);
      const actions = tr.insertCell();
      actions.className = "actions";
      const save = document.createElement("button");
      save.textContent = "保存";
      save.className = "small";
      save.addEventListener("click", () => savePoints(p.person, area.value));
      const test = document.createElement("button");
      test.textContent = "测试";
      test.className = "small secondary";
      test.addEventListener("click", () => testPerson(p.person, test));
      actions.append(save, test);
    }
  }

  async function savePoints(person, text) {
    const points = text.split("\n").map((l) => l.trim()).filter(Boolean).map((line, i) => {
      const [kind, ...rest] = line.split(/\s+/);
      const drill = rest.includes("drill");
      return { kind, address: rest.filter((x) => x !== "drill").join(""), priority: i, drill };
    });
    try {
      await api(`/api/notify/people/${encodeURIComponent(person)}/contact-points`,
        { method: "PUT", body: JSON.stringify(points) });
      say(`已保存 ${person} 的联系方式`);
      showPeople();
    } catch (err) { say(`保存失败：${err.message}`); }
  }

  async function testPerson(person, button) {
    button.disabled = true;
    try {
      const outcomes = await api("/api/notify/test", { method: "POST", body: JSON.stringify({ person }) });
      $("test-result").hidden = false;
      $("test-result").textContent = `测试 ${person}：\n` + (outcomes.map((o) =>
        `${o.ok ? "成功" : "失败"}  ${CHANNEL[o.channel] || o.channel}  ${o.address}  ${o.provider}  ${o.ok ? o.message_id : o.error}`
      ).join("\n") || "没有联系方式");
    } catch (err) { say(`测试失败：${err.message}`); }
    button.disabled = false;
  }

  // --- rules
  function stepsText(steps) {
    return steps.map((s) => `${s.after_s}:${s.channels.join(s.first_only ? "|" : ",")}`).join("; ");
  }

  function parseSteps(text) {
    return text.split(";").map((s) => s.trim()).filter(Boolean).map((s) => {
      const [after, channels = ""] = s.split(":");
      const firstOnly = channels.includes("|");
      return { after_s: Number(after), channels: channels.split(/[|,]/).map((c) => c.trim()).filter(Boolean),
               first_only: firstOnly };
    });
  }

  async function showRules() {
    const rules = await api("/api/notify/rules");
    const body = $("rules").tBodies[0];
    body.replaceChildren();
    for (const r of rules) {
      const tr = body.insertRow();
      cell(tr, r.role === "*" ? "所有角色" : r.role);
      cell(tr, URGENCY[r.urgency] || r.urgency);
      cell(tr, r.source === "operator" ? "已修改" : "默认", "muted");
      const td = tr.insertCell();
      const input = document.createElement("input");
      input.className = "steps mono";
      input.value = stepsText(r.steps);
      input.setAttribute("aria-label", `${r.role} ${r.urgency} 的步骤`);
      td.append(input);
      const actions = tr.insertCell();
      const save = document.createElement("button");
      save.textContent = "保存";
      save.className = "small";
      save.addEventListener("click", () => saveRule(r.role, r.urgency, input.value));
      actions.append(save);
    }
  }

  async function saveRule(role, urgency, text) {
    try {
      await api(`/api/notify/rules/${encodeURIComponent(role)}/${urgency}`,
        { method: "PUT", body: JSON.stringify(parseSteps(text)) });
      say(`已保存规则 ${role}/${urgency}`);
      showRules();
    } catch (err) { say(`保存失败：${err.message}`); }
  }

  $("rule-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    saveRule($("rule-role").value.trim(), $("rule-urgency").value, $("rule-steps").value);
  });

  async function showFaults() {
    try {
      const faults = await api("/api/notify/faults");
      $("faults").textContent = faults.length ? `通知渠道故障：${faults.map((f) => CHANNEL[f.split(":")[1]] || f).join("、")}` : "";
    } catch (err) { /* the next check tries again */ }
  }

  const fromHash = new URLSearchParams(location.hash.replace(/^#/, "")).get("incident");
  if (fromHash) { $("incident-id").value = fromHash; watching = fromHash; }
  showAttempts();
  showPeople().catch((err) => say(`联系人：${err.message}`));
  showRules().catch((err) => say(`规则：${err.message}`));
  showFaults();
  setInterval(() => { showAttempts(); showFaults(); }, 3000);
})();
