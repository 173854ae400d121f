// The service's own state (docs/scaling.md "High availability"): this instance, who holds each role, the faults.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const ROLE = { escalation: "逐级上报计时", dispatch: "发送通知与派单" };
  const roleName = (role) => role.startsWith("ingest:") ? `接收设备消息（${role.slice(7)}）` : (ROLE[role] || role);
  const seconds = (s) => s >= 3600 ? `${(s / 3600).toFixed(1)} 小时` : s >= 60 ? `${Math.floor(s / 60)} 分 ${Math.round(s % 60)} 秒`
    : `${s.toFixed(1)} 秒`;

  const cell = window.wanliCell;  // session.js

  async function json(path) {
    const resp = await fetch(path);
    const data = await resp.json().catch(() => null);
    if (data === null) throw new Error(`HTTP ${resp.status}`);
    return [resp.status, data];
  }

  async function refresh() {
    try {
      const [[code, ready], [statsCode, stats]] = await Promise.all([json("/readyz"), json("/api/stats?latency=false")]);
      if (statsCode !== 200) throw new Error(stats.detail || `HTTP ${statsCode}`);
      const roles = stats.roles || {};
      $("instance").textContent = roles.instance || "";
      $("ready").textContent = code === 200 ? "本实例可以服务" : "本实例不能完整服务（见下方故障）";
      $("ready").className = `ready ${code === 200 ? "ok" : "bad"}`;
      const held = $("held");
      held.replaceChildren();
      for (const role of roles.held || []) {
        const li = document.createElement("li");
        li.textContent = roleName(role);
        held.append(li);
      }
      if (!(roles.held || []).length) {
        const li = document.createElement("li");
        li.className = "none";
        li.textContent = "待命：不承担职责，只提供页面和接口";
        held.append(li);
      }
      const body = $("leases").tBodies[0];
      body.replaceChildren();
      for (const lease of roles.leases || []) {
        const row = body.insertRow();
        cell(row, roleName(lease.role));
        cell(row, lease.holder, lease.holder === roles.instance ? "mine mono" : "mono");
        cell(row, lease.token, "num");
        const lapsed = lease.expires_in_s < 0;
        cell(row, lapsed ? `已过期 ${seconds(-lease.expires_in_s)}` : seconds(lease.expires_in_s), lapsed ? "num lapsed" : "num");
        cell(row, seconds(Math.max(0, lease.held_for_s)), "num");
        cell(row, lapsed ? "无人承担" : lease.holder === roles.instance ? "本实例承担" : "其他实例承担", lapsed ? "lapsed" : "");
      }
      const faults = [...(ready.impaired || []).map((f) => ({ ...f, impairs: true })), ...(ready.degraded || [])];
      const fbody = $("faults").tBodies[0];
      fbody.replaceChildren();
      for (const f of faults) {
        const row = fbody.insertRow();
        cell(row, f.impairs ? "影响报警" : "降级", f.impairs ? "impairs" : "");
        cell(row, f.title);
        cell(row, f.detail, "small");
      }
      $("faults").hidden = faults.length === 0;
      $("no-faults").hidden = faults.length !== 0;
      $("message").textContent = "";
    } catch (err) {
      $("message").textContent = `读取失败：${err.message}`;
    }
  }

  refresh();
  setInterval(refresh, 2000);
})();
