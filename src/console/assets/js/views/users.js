// Users: list and search accounts, see one with its usage, change its role
// and revoke its sessions.

import { ApiError, del, get, isMissingRoute, put, qs } from "../api.js";
import { badge, card, empty, facts, fmtBytes, fmtNum, h, mount, table, when } from "../dom.js";

export default {
  title: "Users",
  usesWindow: false,
  async render(el, ctx, params) {
    const q = params.q || "";
    let page = null;
    try {
      page = await get("/api/users" + qs({ q, limit: 100, cursor: params.cursor }));
    } catch (e) {
      if (!isMissingRoute(e)) throw e;
    }
    const detail = h("div");
    if (params.id) mount(detail, await userDetail(params.id, ctx));

    const search = h("form.toolbar", {
      onsubmit: (ev) => {
        ev.preventDefault();
        const v = new FormData(ev.target).get("q").trim();
        // Without a list endpoint, a search can only open an account by id.
        location.hash = "#/users" + qs(page ? { q: v } : { id: v });
      },
    },
    h("label.grow", page ? "Search by email or name" : "Open a user by id", h("input", { name: "q", value: page ? q : params.id || "", type: "search", placeholder: page ? "alice@example.com" : "user id" })),
    h("button.primary", { type: "submit" }, page ? "Search" : "Open"));

    mount(el,
      card(["Accounts", page ? h("span.muted", `${page.items.length} shown`) : null],
        search,
        page
          ? table([
            { key: "email", title: "Email" },
            { key: "name", title: "Name" },
            { key: "role", title: "Role", render: (u) => badge(u.role, u.role === "admin" ? "admin" : null) },
            { key: "createdAt", title: "Created", render: (u) => when(u.createdAt) },
          ], page.items, {
            sortKey: "createdAt",
            empty: q ? `No account matches “${q}”.` : "No account.",
            selected: (u) => u.id === params.id,
            onSelect: (u) => { location.hash = "#/users" + qs({ q, id: u.id }); },
          })
          : null,
        page && !params.id ? h("p.hint", "Select an account to see its usage and sessions, change its role or revoke its sessions.") : null,
        page ? null
          : h("p.muted.small", "Listing and searching accounts needs GET /api/users (admin); until then open an account by its id (the Jobs view links to job owners)."),
        page?.nextCursor ? h("p", h("a", { href: "#/users" + qs({ q, cursor: page.nextCursor }) }, "More →")) : null),
      detail,
    );
  },
};

async function userDetail(id, ctx) {
  let profile;
  try {
    profile = await get(`/api/users/${encodeURIComponent(id)}`);
  } catch (e) {
    if (e instanceof ApiError && (e.status === 404 || e.status === 422 || e.status === 400)) return card("User", empty(`No user with id ${id}.`));
    throw e;
  }
  const sessions = await get(`/api/users/${encodeURIComponent(id)}/sessions` + qs({ limit: 100 }));
  // The profile is the user's fields with `stats` beside them.
  const { stats: s, ...u } = profile;
  const isMe = ctx.me?.user?.id === u.id;
  const role = h("select", { name: "role", disabled: isMe, title: isMe ? "You cannot change your own role here." : "" },
    ["user", "admin"].map((r) => h("option", { value: r, selected: r === u.role }, r)));
  const active = sessions.items.filter((x) => isActive(x));
  return h("div.grid.two",
    card([u.email, badge(u.role, u.role === "admin" ? "admin" : null)],
      facts([
        ["Id", h("span.mono", u.id)],
        ["Name", u.name || "–"],
        ["Created", when(u.createdAt)],
        ["Last activity", s.lastActivityAt ? when(s.lastActivityAt) : "–"],
        ["Sessions", `${fmtNum(s.activeSessions)} active of ${fmtNum(s.sessions)}`],
        ["Jobs", `${fmtNum(s.jobs)} (${fmtNum(s.jobsSucceeded)} succeeded, ${fmtNum(s.jobsFailed)} failed)`],
        ["Files", `${fmtNum(s.files)} · ${fmtBytes(s.fileBytes)}`],
        ["AI", `${fmtNum(s.aiCalls)} calls · ${fmtNum(s.aiInputTokens)} in / ${fmtNum(s.aiOutputTokens)} out tokens`],
      ]),
      h("form.toolbar", {
        onsubmit: async (ev) => {
          ev.preventDefault();
          try {
            await put(`/api/users/${encodeURIComponent(u.id)}`, { role: role.value });
            ctx.notice(`${u.email} is now ${role.value === "admin" ? "an admin" : "a user"}${role.value === "admin" ? " (their sessions were revoked)" : ""}.`);
          } catch (e) {
            ctx.notice(`Role change failed: ${e.message}`, true);
          }
          ctx.refresh();
        },
      }, h("label", "Role", role), h("button", { type: "submit", disabled: isMe }, "Change role"))),
    card(["Sessions", active.length ? h("button.danger", { type: "button", id: "revoke-all", onclick: () => revoke(active, ctx) }, `Revoke all ${active.length}`) : null],
      table([
        { key: "createdAt", title: "Created", render: (x) => when(x.createdAt) },
        { key: "expiresAt", title: "Expires", render: (x) => when(x.expiresAt) },
        { key: "ip", title: "From", render: (x) => h("span.mono", x.ip || x.clientIp || "–") },
        { key: "state", title: "State", sort: (x) => (isActive(x) ? 1 : 0), render: (x) => badge(isActive(x) ? "active" : x.revokedAt ? "revoked" : "expired", isActive(x) ? "ok" : null) },
        { key: "id", title: "", sortable: false, render: (x) => (isActive(x) ? h("button.danger", { type: "button", onclick: () => revoke([x], ctx) }, x.id === ctx.me?.sessionId ? "Sign out" : "Revoke") : null) },
      ], sessions.items, { sortKey: "createdAt", empty: "No session." })),
  );
}

function isActive(s) {
  if (typeof s.active === "boolean") return s.active;
  return !s.revokedAt && (!s.expiresAt || Date.parse(s.expiresAt) > Date.now());
}

async function revoke(list, ctx) {
  let done = 0;
  for (const s of list) {
    try {
      await del(`/api/sessions/${encodeURIComponent(s.id)}`);
      done += 1;
    } catch (e) {
      ctx.notice(`Revoking failed: ${e.message}`, true);
      break;
    }
  }
  if (done) ctx.notice(`${done} session${done === 1 ? "" : "s"} revoked.`);
  ctx.refresh();
}
