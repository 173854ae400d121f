// The answer page a signed link opens (alerts/notify/links.py): the token is in the fragment, so it never
// reaches a server log or a Referer; it goes to the API in a POST body only. No inline script (CSP script-src 'self').
(function () {
  "use strict";
  var token = decodeURIComponent((location.hash || "").replace(/^#/, ""));
  var statusEl = document.getElementById("status");
  var SEVERITY = { critical: "紧急", high: "重要", warning: "提示", info: "通知" };

  function say(text, isError) {
    statusEl.textContent = text;
    statusEl.className = "status" + (isError ? " error" : "");
  }

  function post(path, body) {
    return fetch(path, {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
      credentials: "omit", cache: "no-store",
    }).then(function (resp) {
      return resp.json().then(function (data) {
        if (!resp.ok) { throw new Error(data && data.detail ? String(data.detail) : "HTTP " + resp.status); }
        return data;
      });
    });
  }

  function clock(ms) {
    var d = new Date(ms);
    return d.toLocaleString("zh-CN", { timeZone: "Asia/Shanghai", hour12: false });
  }

  function show(f) {
    document.getElementById("facts").hidden = false;
    var sev = document.getElementById("severity");
    sev.textContent = SEVERITY[f.severity] || f.severity;
    sev.className = "severity " + f.severity;
    document.getElementById("title").textContent = f.title;
    document.getElementById("location").textContent = f.location;
    document.getElementById("opened").textContent = clock(f.opened_ms);
    document.getElementById("next-step").textContent = f.next_step || "请与城运中心联系";
    document.getElementById("person").textContent = f.person;
    if (f.answered) { say("已应答：" + f.answered); }
  }

  function answer(kind, button) {
    var buttons = document.querySelectorAll("button[data-answer]");
    Array.prototype.forEach.call(buttons, function (b) { b.disabled = true; });
    say("正在提交…");
    post("/api/answer", { token: token, answer: kind }).then(function (f) {
      show(f);
      say("已应答：" + (f.answered || button.textContent) + "。谢谢！");
    }).catch(function (err) {
      Array.prototype.forEach.call(buttons, function (b) { b.disabled = false; });
      say("提交失败：" + err.message + "。请直接致电城运中心。", true);
    });
  }

  Array.prototype.forEach.call(document.querySelectorAll("button[data-answer]"), function (b) {
    b.addEventListener("click", function () { answer(b.getAttribute("data-answer"), b); });
  });

  if (!token) { say("链接不完整，请直接致电城运中心。", true); return; }
  post("/api/answer/facts", { token: token }).then(show).catch(function (err) {
    say(err.message + "。请直接致电城运中心。", true);
  });
})();
