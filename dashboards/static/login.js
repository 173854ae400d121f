// The login page: sign in, then go back to the page that sent us here (only ever a page of ours). When an
// admin has asked for a new password, the page asks for it first (every other request would answer 403).
"use strict";
import { refusalDetail } from "./api.js";
import { $ } from "./dom.js";

// Where to go after signing in: ?next=/ops/… as the server's redirect gave it; anything else
// (another site, "//evil", a script URL) falls back to the wall.
function nextPage() {
  const next = new URLSearchParams(location.search).get("next") || "";
  return /^\/ops\/[^/\\]/.test(next) || next === "/ops/" ? next : "/ops/";
}

function showError(text, id = "login-error") {
  const box = $(id);
  box.textContent = text;
  box.hidden = false;
}

// Between signing in and the new password being saved: who, the old password, the session's CSRF token.
let pending = null;

function askForNewPassword(username, password, csrfToken) {
  pending = { username, password, csrfToken };
  $("login").hidden = true;
  $("new-password").hidden = false;
  $("new-password-1").focus();
}

async function saveNewPassword(event) {
  event.preventDefault();
  const first = $("new-password-1").value;
  if (first !== $("new-password-2").value) {
    showError("两次输入的密码不一致", "new-password-error");
    return;
  }
  const button = $("new-password-submit");
  button.disabled = true;
  try {
    const resp = await fetch("/api/auth/password", {
      method: "POST", headers: { "content-type": "application/json", "X-CSRF-Token": pending.csrfToken },
      body: JSON.stringify({ current_password: pending.password, new_password: first }),
    });
    if (resp.status !== 204) {
      const body = await resp.json().catch(() => ({}));
      const detail = refusalDetail(body, `（${resp.status}）`);
      showError(`未能保存：${detail}`, "new-password-error");
      return;
    }
    // A new password ends every session, this one too: sign in again with it.
    const again = await fetch("/api/auth/login", {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ username: pending.username, password: first }),
    });
    if (again.ok) location.replace(nextPage());
    else showError(`新密码已保存，请重新登录（${again.status}）`, "new-password-error");
  } catch (err) {
    showError(`无法连接服务器（${err.message}），请检查网络后重试`, "new-password-error");
  } finally {
    button.disabled = false;
  }
}

async function signIn(event) {
  event.preventDefault();
  const username = $("username").value.trim();
  const password = $("password").value;
  if (!username || !password) {
    showError("请输入账号和密码");
    return;
  }
  const button = $("login-submit");
  button.disabled = true;
  let resp;
  try {
    resp = await fetch("/api/auth/login", {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ username, password }),
    });
  } catch (err) {
    button.disabled = false;
    showError(`无法连接服务器（${err.message}），请检查网络后重试`);
    return;
  }
  if (resp.ok) {
    const me = await resp.json().catch(() => ({}));
    if (me.must_change_password) askForNewPassword(username, password, me.csrf_token);
    else location.replace(nextPage());
    return;
  }
  button.disabled = false;
  const body = await resp.json().catch(() => ({}));
  if (resp.status === 401) showError("账号或密码不正确");
  else if (resp.status === 429) showError(typeof body.detail === "string" ? body.detail : "尝试次数过多，请稍后再试");
  else showError(`登录失败（${resp.status}）`);
  $("password").select();
}

// Already signed in (e.g. arrived from a link, when the browser does not send a strict cookie): go on.
async function alreadySignedIn() {
  try {
    const resp = await fetch("/api/auth/status");
    const status = resp.ok ? await resp.json() : null;
    if (status && status.signed_in && !status.me.must_change_password) location.replace(nextPage());
  } catch (_err) { /* the form is there */ }
}

$("login").addEventListener("submit", signIn);
$("new-password").addEventListener("submit", saveNewPassword);
alreadySignedIn();
