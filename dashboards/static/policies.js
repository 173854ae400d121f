// Escalation policies as data (docs/incidents.md "Escalation policies as data"): the version in force, a draft
// checked and dry-run against the scenario library, applied, and the versions' trail.
"use strict";
(() => {
  const CHANGE = { earlier: "提前", later: "推迟", added: "新增", removed: "不再通知", recipients: "对象变化" };
  const $ = (id) => document.getElementById(id);
  let current = null;   // the version in force (GET /api/policies)
  let triedText = null; // the draft text the last successful dry-run was for: apply only that

  function say(text, ok) {
    $("message").textContent = text || "";
    $("message").classList.toggle("ok", Boolean(ok));
  }

  async function api(path, options = {}) {
    const resp = await fetch(path, { headers: { "content-type": "application/json" }, ...options });
    const data = await resp.json().catch(() => null);
    if (!resp.ok) throw new Error(data && data.detail ? (typeof data.detail === "string" ? data.detail
      : data.detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("；")) : `HTTP ${resp.status}`);
    return data;
  }

  const cell = window.wanliCell;  // session.js

  function when(iso) {
    return new Date(iso).toLocaleString("zh-CN", { timeZone: "Asia/Shanghai", hour12: false });
  }

  function seconds(s) {
    if (s == null) return "—";
    if (s < 120) return `${Math.round(s)} 秒`;
    if (s < 7200) return `${Math.round(s / 6) / 10} 分钟`;
    return `${Math.round(s / 360) / 10} 小时`;
  }

  async function load() {
    current = await api("/api/policies");
    $("current").textContent = `第 ${current.version} 版 · ${when(current.created_at)} · ${current.actor}` +
      (current.comment ? ` · ${current.comment}` : "");
    $("draft").value = current.document;
    showChoices();
    triedText = null;
    $("apply").disabled = true;
    await loadVersions();
  }

  function showChoices() {
    const box = $("story-choices");
    if (!box.childElementCount) {
      for (const s of current.stories) {
        const input = document.createElement("input");
        input.type = "checkbox";
        input.value = s.name;
        input.checked = s.default;
        const label = document.createElement("label");
        label.title = s.title;
        label.append(input, ` ${s.name}`);
        box.append(label);
      }
    }
    const defaults = $("threshold-defaults");
    defaults.replaceChildren();
    for (const [kind, values] of Object.entries(current.thresholds)) {
      for (const [name, value] of Object.entries(values)) {
        const line = document.createElement("div");
        line.textContent = `${kind}.${name} = ${value}`;
        defaults.append(line);
      }
    }
  }

  function replayWhat() {
    const what = { scenarios: [...document.querySelectorAll("#story-choices input:checked")].map((i) => i.value) };
    if ($("from-at").value) what.from_at = new Date($("from-at").value).toISOString();
    if ($("to-at").value) what.to_at = new Date($("to-at").value).toISOString();
    return what;
  }

  async function loadVersions() {
    const body = $("versions").tBodies[0];
    body.replaceChildren();
    for (const v of await api("/api/policies/versions")) {
      const tr = body.insertRow();
      cell(tr, `第 ${v.version} 版`);
      cell(tr, when(v.created_at));
      cell(tr, v.actor);
      cell(tr, v.previous_version ? `第 ${v.previous_version} 版` : "—");
      cell(tr, v.changes.join("；") || "（初始）");
      cell(tr, v.comment);
    }
  }

  function showChanges(lines) {
    const list = $("changes");
    list.replaceChildren();
    for (const line of lines.length ? lines : ["草稿与现行版本相同"]) {
      const li = document.createElement("li");
      li.textContent = line;
      list.append(li);
    }
  }

  async function check() {
    try {
      const result = await api("/api/policies/check", { method: "POST", body: JSON.stringify({ document: $("draft").value }) });
      showChanges(result.changes);
      say("草稿有效", true);
    } catch (err) {
      say(`草稿有误：${err.message}`);
    }
  }

  async function dryRun() {
    const text = $("draft").value;
    $("apply").disabled = true;
    say("试运行中：重放场景库…", true);
    try {
      const r = await api("/api/policies/dry-run", { method: "POST",
                                                     body: JSON.stringify({ document: text, ...replayWhat() }) });
      showChanges(r.changes);
      const stories = $("stories").tBodies[0];
      stories.replaceChildren();
      for (const s of r.stories) {
        const tr = stories.insertRow();
        cell(tr, s.kind === "history" ? "过去的事件" : s.story, s.kind === "history" ? "" : "mono");
        cell(tr, s.error ? `未能重放：${s.error}` : s.incidents, s.error ? "muted" : "num");
        cell(tr, s.steps_current, "num");
        cell(tr, s.steps_draft, "num");
        cell(tr, s.differences, "num");
      }
      $("stories").hidden = false;
      const diffs = $("differences").tBodies[0];
      diffs.replaceChildren();
      for (const d of r.differences) {
        const tr = diffs.insertRow();
        cell(tr, d.story, "mono");
        cell(tr, d.incident);
        cell(tr, d.step, "num");
        const badge = document.createElement("span");
        badge.className = `change ${d.change}`;
        badge.textContent = CHANGE[d.change] || d.change;
        cell(tr, "").append(badge);
        cell(tr, seconds(d.current_at_s));
        cell(tr, seconds(d.draft_at_s));
        cell(tr, (d.draft_who.length ? d.draft_who : d.current_who).join("、"), "who");
      }
      $("differences").hidden = r.differences.length === 0;
      triedText = text;
      $("apply").disabled = r.changes.length === 0;
      say(`试运行完成（${r.seconds} 秒）：${r.differences.length} 处通知不同` +
        (r.changes.length ? "；确认无误后可应用" : ""), true);
    } catch (err) {
      say(`试运行失败：${err.message}`);
    }
  }

  async function apply() {
    const text = $("draft").value;
    if (text !== triedText) { say("草稿在试运行后改过，请先再试运行一次"); $("apply").disabled = true; return; }
    try {
      const v = await api("/api/policies/apply", { method: "POST", body: JSON.stringify({
        document: text, based_on: current.version, comment: $("comment").value }) });
      await load();
      $("changes").replaceChildren();
      $("stories").hidden = $("differences").hidden = true;  // they compared with the version now replaced
      say(`已应用第 ${v.version} 版：新事件与 ${v.rebased} 个未确认事件即时生效`, true);
    } catch (err) {
      say(`应用失败：${err.message}`);
    }
  }

  $("check").addEventListener("click", check);
  $("dry-run").addEventListener("click", dryRun);
  $("apply").addEventListener("click", apply);
  $("reset").addEventListener("click", () => load().then(() => say("已恢复为现行版本", true)));
  $("draft").addEventListener("input", () => { $("apply").disabled = $("draft").value !== triedText || triedText === null; });
  load().catch((err) => say(`无法载入升级策略：${err.message}`));
})();
