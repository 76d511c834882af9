// Jobs: filter by status, kind and user; see a job's progress, result and
// error; cancel queued or running jobs.

import { ApiError, get, post, qs } from "../api.js";
import { badge, card, empty, facts, fmtNum, h, json, mount, table, when } from "../dom.js";

const STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"];
const KINDS = ["ai.chat", "files.pdf", "files.docx", "files.csv", "files.screenshot", "loadtest.run", "maintenance.backup"];

export default {
  title: "Jobs",
  usesWindow: false,
  async render(el, ctx, params) {
    const filter = { status: params.status || "", kind: params.kind || "", userId: params.userId || "" };
    const page = await get("/api/jobs" + qs({ ...filter, limit: 100, cursor: params.cursor }));
    const jobs = page.items;
    if (jobs.some((j) => j.status === "running" || j.status === "queued")) ctx.poll(3000);
    const detail = h("div");
    const chosen = jobs.find((j) => j.id === params.id);
    const open = async (j) => {
      const fresh = await get(`/api/jobs/${encodeURIComponent(j.id)}`);
      mount(detail, jobDetail(fresh, ctx));
    };
    if (chosen) await open(chosen);

    const form = h("form.toolbar", {
      onsubmit: (ev) => {
        ev.preventDefault();
        const f = new FormData(ev.target);
        location.hash = "#/jobs" + qs({ status: f.get("status"), kind: f.get("kind"), userId: f.get("userId").trim() });
      },
    },
    h("label", "Status", h("select", { name: "status" }, h("option", { value: "" }, "any"), STATUSES.map((s) => h("option", { value: s, selected: s === filter.status }, s)))),
    h("label", "Kind", h("select", { name: "kind" }, h("option", { value: "" }, "any"), [...new Set([...KINDS, filter.kind].filter(Boolean))].map((k) => h("option", { value: k, selected: k === filter.kind }, k)))),
    h("label.grow", "User id", h("input", { name: "userId", value: filter.userId, placeholder: "any user" })),
    h("button.primary", { type: "submit" }, "Filter"),
    );

    mount(el,
      card(["Jobs", h("span.muted", `${jobs.length} shown, newest first`)],
        form,
        table([
          { key: "status", title: "Status", render: (j) => badge(j.status, j.status) },
          { key: "kind", title: "Kind", render: (j) => h("span.mono", j.kind) },
          { key: "progress", title: "Progress", num: true, sort: (j) => j.progress?.percent ?? 0, render: (j) => (j.progress ? `${fmtNum(j.progress.percent)} %` : "–") },
          { key: "attempts", title: "Attempts", num: true, render: (j) => `${j.attempts}/${j.maxAttempts}` },
          { key: "userId", title: "User", render: (j) => (j.userId ? h("a.mono", { href: "#/users" + qs({ id: j.userId }) }, j.userId.slice(0, 8)) : "–") },
          { key: "createdAt", title: "Created", render: (j) => when(j.createdAt) },
          { key: "finishedAt", title: "Finished", render: (j) => (j.finishedAt ? when(j.finishedAt) : "–") },
          { key: "id", title: "", sortable: false, render: (j) => (canCancel(j) ? cancelButton(j, ctx) : null) },
        ], jobs, {
          empty: "No job matches.",
          selected: (j) => chosen && j.id === chosen.id,
          onSelect: (j, tr) => {
            tr.parentElement.querySelectorAll("tr").forEach((x) => x.classList.remove("selected"));
            tr.classList.add("selected");
            open(j);
          },
        }),
        chosen ? null : h("p.hint", "Select a job to see its progress, result and error."),
        page.nextCursor ? h("p", h("a", { href: "#/jobs" + qs({ ...filter, cursor: page.nextCursor }) }, "Older jobs →")) : null),
      detail,
    );
  },
};

const canCancel = (j) => (j.status === "queued" || j.status === "running") && !j.cancelRequested;

function cancelButton(j, ctx) {
  return h("button.danger", {
    type: "button",
    onclick: async (ev) => {
      ev.stopPropagation();
      ev.target.disabled = true;
      try {
        await post(`/api/jobs/${encodeURIComponent(j.id)}/cancel`);
        ctx.notice(`Cancel requested for job ${j.id}.`);
      } catch (e) {
        ctx.notice(e instanceof ApiError && e.status === 409 ? "The job had already finished." : `Cancel failed: ${e.message}`, true);
      }
      ctx.refresh();
    },
  }, "Cancel");
}

function jobDetail(j, ctx) {
  return h("div.grid.two",
    card([h("span.mono", j.id), badge(j.status, j.status)],
      facts([
        ["Kind", h("span.mono", j.kind)],
        ["Priority", fmtNum(j.priority)],
        ["Progress", j.progress ? `${fmtNum(j.progress.percent)} %${j.progress.message ? " · " + j.progress.message : ""}` : "–"],
        ["Attempts", `${j.attempts} of ${j.maxAttempts}`],
        ["User", j.userId ? h("a.mono", { href: "#/users" + qs({ id: j.userId }) }, j.userId) : "–"],
        ["Created", when(j.createdAt)],
        ["Run at", when(j.runAt)],
        ["Started", j.startedAt ? when(j.startedAt) : "–"],
        ["Finished", j.finishedAt ? when(j.finishedAt) : "–"],
        j.cancelRequested ? ["Cancel", "requested"] : null,
      ]),
      canCancel(j) ? h("p", cancelButton(j, ctx)) : null),
    card("Payload, result and error",
      j.payload !== undefined ? h("div", h("h3", "Payload"), json(j.payload)) : h("p.muted.small", "No payload."),
      h("h3", "Result"), j.result != null ? json(j.result) : empty("No result (yet)."),
      j.error ? h("div", h("h3", "Error"), json(j.error)) : null),
  );
}
