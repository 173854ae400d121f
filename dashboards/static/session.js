// Shared by the signed-in pages: who is signed in (in the header, with 退出 to sign out), and back to
// the login page when the session ends (a 401 from any request, or the minute's check).
"use strict";
(() => {
  const LOGIN = "/ops/login.html";
  const CHECK_EVERY_MS = 60_000;
  const plainFetch = window.fetch.bind(window);
  let leaving = false;

  function toLogin() {
    if (leaving) return;
    leaving = true;
    const here = location.pathname + location.search + location.hash;
    location.assign(`${LOGIN}?next=${encodeURIComponent(here)}`);
  }

  // The pages' own requests: a 401 means the session ended (expired, signed out elsewhere, disabled).
  window.fetch = async (...args) => {
    const resp = await plainFetch(...args);
    if (resp.status === 401) toLogin();
    return resp;
  };

  function show(me) {
    const header = document.querySelector("body > header");
    if (!header || !me) return;
    let box = document.getElementById("whoami");
    if (!box) {
      const style = document.createElement("style");
      style.textContent = `
        #whoami { display: flex; align-items: center; gap: 0.6em; margin-left: 1em; color: var(--muted, #8fa3b8);
                  font-size: 0.8em; white-space: nowrap; }
        #whoami .name { color: var(--text, #e8eef5); }
        #whoami button { font: inherit; color: inherit; background: none; border: 1px solid var(--line, #24384f);
                         border-radius: 6px; padding: 0.1em 0.7em; cursor: pointer; }
        #whoami button:hover { color: var(--text, #e8eef5); }`;
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
        await plainFetch("/api/auth/logout", { method: "POST" }).catch(() => null);
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
    if (status.signed_in) show(status.me);
    else toLogin();
  }

  check();
  setInterval(check, CHECK_EVERY_MS);
})();
