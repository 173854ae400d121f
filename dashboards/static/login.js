// The login page: sign in, then go back to the page that sent us here (only ever a page of ours).
"use strict";

const $ = (id) => document.getElementById(id);

// Where to go after signing in: ?next=/ops/… as the server's redirect gave it; anything else
// (another site, "//evil", a script URL) falls back to the wall.
function nextPage() {
  const next = new URLSearchParams(location.search).get("next") || "";
  return /^\/ops\/[^/\\]/.test(next) || next === "/ops/" ? next : "/ops/";
}

function showError(text) {
  const box = $("login-error");
  box.textContent = text;
  box.hidden = false;
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
    location.replace(nextPage());
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
    if (status && status.signed_in) location.replace(nextPage());
  } catch (_err) { /* the form is there */ }
}

$("login").addEventListener("submit", signIn);
alreadySignedIn();
