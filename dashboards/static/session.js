// Shared by the signed-in pages: who is signed in (in the header, with 退出 to sign out), and back to
// the login page when the session ends (a 401 from any request, or the minute's check). It also adds
// the session's CSRF token (X-CSRF-Token, from /api/auth/status) to the pages' own requests that change
// something, so no page needs to know about it (docs/access.md).
"use strict";
// A table cell with text (never HTML), for the desk pages' tables: window.wanliCell(row, text, className).
window.wanliCell = (row, text, cls) => {
  const td = row.insertCell();
  td.textContent = text == null ? "" : String(text);
  if (cls) td.className = cls;
  return td;
};
(() => {
  const LOGIN = "/ops/login.html";
  const CHECK_EVERY_MS = 60_000;
  const plainFetch = window.fetch.bind(window);
  const SAFE = new Set(["GET", "HEAD", "OPTIONS"]);
  let leaving = false;
  let csrfToken = "";
  let statusAsked = null;  // the first /api/auth/status, which brings the token

  function toLogin() {
    if (leaving) return;
    leaving = true;
    const here = location.pathname + location.search + location.hash;
    location.assign(`${LOGIN}?next=${encodeURIComponent(here)}`);
  }

  // The pages' own requests: a 401 means the session ended (expired, signed out elsewhere, disabled).
  window.fetch = async (input, init = {}) => {
    const method = (init.method || (input instanceof Request ? input.method : "GET")).toUpperCase();
    const url = new URL(input instanceof Request ? input.url : String(input), location.href);
    if (!SAFE.has(method) && url.origin === location.origin) {
      if (!csrfToken && statusAsked) await statusAsked;
      const headers = new Headers(init.headers || (input instanceof Request ? input.headers : undefined));
      if (csrfToken) headers.set("X-CSRF-Token", csrfToken);
      init = { ...init, headers };
    }
    const resp = await plainFetch(input, init);
    if (resp.status === 401) toLogin();
    return resp;
  };

  function show(me) {
    const header = document.querySelector("body > header");
    if (!header || !me) return;
    let box = document.getElementById("whoami");
    if (!box) {
      // A stylesheet of its own, not an inline <style>: the Content-Security-Policy allows styles from files only.
      const style = document.createElement("link");
      style.rel = "stylesheet";
      style.href = "/ops/session.css";
      document.head.append(style);
      box = document.createElement("span");
      box.id = "whoami";
      const name = document.createElement("span");
      name.className = "name";
      const out = document.createElement("button");
      out.type = "button";
      out.id = "logout";
      out.textContent = "退出";
      out.addEventListener("click", async () => {
        await plainFetch("/api/auth/logout", { method: "POST", headers: { "X-CSRF-Token": csrfToken } })
          .catch(() => null);
        toLogin();
      });
      box.append(name, out);
      header.append(box);
    }
    const roles = { admin: "管理员", operator: "值班员", maintainer: "设备运维", tester: "测试员",
                    responder: "处置人员", viewer: "只读" };
    box.querySelector(".name").textContent = me.display_name || me.name;
    box.title = `${me.name} · ${me.roles.map((r) => roles[r] || r).join("、")}`;
    document.body.dataset.roles = me.roles.join(" ");
  }

  async function check() {
    let status;
    try {
      const resp = await plainFetch("/api/auth/status");
      if (!resp.ok) return;  // the server is away or failing: the page shows its own link state
      status = await resp.json();
    } catch (_err) {
      return;
    }
    if (status.signed_in && status.me.must_change_password) toLogin();  // the login page asks for it
    else if (status.signed_in) {
      csrfToken = status.csrf_token || "";
      show(status.me);
    } else toLogin();
  }

  statusAsked = check();
  setInterval(check, CHECK_EVERY_MS);
})();
