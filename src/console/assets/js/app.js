// The console's entry point: sign-in, the admin check, the hash router and
// the shared time window.

import { ApiError, del, get, onAuthFailure, post } from "./api.js";
import { destroyCharts, drawCharts } from "./charts.js";
import { h, mount } from "./dom.js";
import overview from "./views/overview.js";
import performance from "./views/performance.js";
import errors from "./views/errors.js";
import alerts from "./views/alerts.js";
import jobs from "./views/jobs.js";
import loadtests from "./views/loadtests.js";
import system from "./views/system.js";
import users from "./views/users.js";

const VIEWS = { overview, performance, errors, alerts, jobs, loadtests, system, users };
const WINDOWS = ["15m", "1h", "24h", "7d", "30d"];
const $ = (id) => document.getElementById(id);

/** Who is signed in: { sessionId, user } (the token stays in the HttpOnly cookie). */
let me = null;
let current = null;
let timer = null;
let generation = 0;

const ctx = {
  get me() { return me; },
  get window() {
    const w = localStorage.getItem("hs-console-window");
    return WINDOWS.includes(w) ? w : "1h";
  },
  notice(text, bad) {
    const n = $("notice");
    if (!text) { n.hidden = true; return; }
    n.textContent = text;
    n.className = "notice" + (bad ? " bad" : "");
    n.hidden = false;
  },
  /** Redraw the current view (after an action changed something). */
  refresh: () => render(true),
  /** Ask for a redraw every `ms` while this view is shown (0 stops). */
  poll(ms) {
    clearInterval(timer);
    if (ms > 0) timer = setInterval(() => render(false), ms);
  },
};

function show(which) {
  for (const id of ["boot", "signin", "refusal", "shell"]) $(id).hidden = id !== which;
}

/** The session of the cookie, if any (a new tab or a reload finds it too). */
async function whoAmI() {
  try {
    const s = await get("/api/sessions/current", { quiet: true });
    return { sessionId: s.session.id, user: s.user };
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return null;
    throw e;
  }
}

function enter(session) {
  me = session;
  if (me.user.role !== "admin") {
    $("refusal-email").textContent = me.user.email;
    show("refusal");
    return;
  }
  $("me").textContent = me.user.name ? `${me.user.name} (${me.user.email})` : me.user.email;
  show("shell");
  // Setting the hash renders through the hashchange event.
  if (!location.hash) location.hash = "#/overview";
  else render(true);
}

async function signOut() {
  clearInterval(timer);
  destroyCharts();
  if (me?.sessionId) {
    try { await del(`/api/sessions/${encodeURIComponent(me.sessionId)}`, { quiet: true }); } catch { /* already gone */ }
  }
  me = null;
  $("signin-form").reset();
  show("signin");
}

async function render(full) {
  const name = (location.hash.match(/^#\/(\w+)/) || [])[1];
  const view = VIEWS[name] ? name : "overview";
  const mod = VIEWS[view];
  const gen = ++generation;
  if (full || view !== current) {
    clearInterval(timer);
    current = view;
    ctx.notice(null);
    document.querySelectorAll(".sidebar a").forEach((a) => a.classList.toggle("active", a.dataset.view === view));
    $("view-title").textContent = mod.title;
    $("windows").hidden = !mod.usesWindow;
    document.title = `${mod.title} · hs-platform console`;
  }
  document.querySelectorAll("#windows button").forEach((b) => b.classList.toggle("active", b.dataset.window === ctx.window));
  const target = h("div.view");
  try {
    await mod.render(target, ctx, hashParams());
  } catch (e) {
    if (e instanceof ApiError && (e.status === 401 || e.status === 403)) return;
    console.warn("view failed", e);
    mount(target, h("div.notice.bad", `Could not load this view: ${e.message}`));
  }
  if (gen !== generation) return; // a newer render started meanwhile
  destroyCharts();
  $("view").replaceWith(target);
  target.id = "view";
  drawCharts();
  $("updated").textContent = "updated " + new Date().toLocaleTimeString();
}

/** Parameters after the view name: #/jobs?status=failed */
function hashParams() {
  const q = location.hash.split("?")[1] || "";
  return Object.fromEntries(new URLSearchParams(q));
}

function wire() {
  $("signin-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = ev.target;
    const err = $("signin-error");
    err.hidden = true;
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const res = await post("/api/sessions", { email: form.email.value, password: form.password.value }, { quiet: true });
      const session = { sessionId: res.session.id, user: res.user };
      form.password.value = "";
      enter(session);
    } catch (e) {
      err.textContent = e instanceof ApiError && e.status === 401 ? "Wrong email or password." : `Sign-in failed: ${e.message}`;
      err.hidden = false;
    } finally {
      button.disabled = false;
    }
  });
  $("signout").addEventListener("click", signOut);
  $("refusal-signout").addEventListener("click", signOut);
  $("refresh").addEventListener("click", () => render(true));
  $("windows").addEventListener("click", (ev) => {
    const w = ev.target.closest("button")?.dataset.window;
    if (!w) return;
    localStorage.setItem("hs-console-window", w);
    render(true);
  });
  window.addEventListener("hashchange", () => me && render(true));
  onAuthFailure((status) => {
    if (status === 401) {
      me = null;
      clearInterval(timer);
      show("signin");
      $("signin-error").textContent = "Your session ended. Sign in again.";
      $("signin-error").hidden = false;
    } else if (me) {
      me.user.role = "user";
      enter(me);
    }
  });
}

async function start() {
  wire();
  try {
    const session = await whoAmI();
    if (session) enter(session);
    else show("signin");
  } catch (e) {
    show("signin");
    $("signin-error").textContent = `The service did not answer: ${e.message}`;
    $("signin-error").hidden = false;
  }
}

start();
