// Small DOM and formatting helpers. Every text goes in through textContent
// (never as markup), so data from the service cannot become markup.

/** h("div.card", {onclick}, child, ...): an element with classes, props and children. */
export function h(tag, props, ...children) {
  const [name, ...classes] = tag.split(".");
  const el = document.createElement(name || "div");
  if (classes.length) el.className = classes.join(" ");
  if (props && (typeof props !== "object" || props instanceof Node || Array.isArray(props))) {
    children.unshift(props);
    props = null;
  }
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "class") el.className += (el.className ? " " : "") + v;
    else if (k in el && k !== "list") el[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replace an element's children. */
export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function card(title, ...body) {
  const head = Array.isArray(title) ? h("h2", ...title) : h("h2", title);
  return h("section.card", head, ...body);
}

export function kpi(label, value, sub, tone) {
  return h("div.card.kpi" + (tone ? "." + tone : ""), h("h3", label), h("div.value", value), sub ? h("div.sub", sub) : null);
}

export function badge(text, tone) {
  return h("span.badge" + (tone ? "." + String(tone).replace(/[^a-z0-9_-]/gi, "") : ""), text);
}

export function empty(text) {
  return h("div.empty", text);
}

/** A table. columns: [{key, title, num, render(row), sort(row)}]. */
export function table(columns, rows, opts = {}) {
  let sortKey = opts.sortKey || null;
  let asc = opts.asc ?? false;
  const thead = h("thead");
  const tbody = h("tbody");
  const render = () => {
    const sorted = rows.slice();
    const col = columns.find((c) => c.key === sortKey);
    if (col) {
      const val = col.sort || ((r) => r[col.key]);
      sorted.sort((a, b) => {
        const x = val(a), y = val(b);
        const cmp = typeof x === "number" && typeof y === "number" ? x - y : String(x ?? "").localeCompare(String(y ?? ""));
        return asc ? cmp : -cmp;
      });
    }
    mount(thead, h("tr", columns.map((c) => {
      const th = h("th", { class: [c.num ? "num" : "", c.sortable === false ? "" : "sortable", c.key === sortKey ? "sorted" : "", c.key === sortKey && asc ? "asc" : ""].filter(Boolean).join(" ") }, c.title);
      if (c.sortable !== false) {
        th.dataset.key = c.key;
        th.addEventListener("click", () => {
          if (sortKey === c.key) asc = !asc;
          else { sortKey = c.key; asc = false; }
          render();
        });
      }
      return th;
    })));
    mount(tbody, sorted.map((r) => {
      const tr = h("tr", columns.map((c) => h("td", { class: [c.num ? "num" : "", c.wrap ? "wrap" : ""].filter(Boolean).join(" ") || null }, c.render ? c.render(r) : fmtCell(r[c.key]))));
      if (opts.onSelect) {
        tr.className = "selectable" + (opts.selected && opts.selected(r) ? " selected" : "");
        tr.addEventListener("click", () => opts.onSelect(r, tr));
      }
      return tr;
    }));
  };
  render();
  if (!rows.length) return h("div", h("div.table-wrap", h("table", thead)), empty(opts.empty || "Nothing to show."));
  return h("div.table-wrap", h("table", thead, tbody));
}

function fmtCell(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number") return fmtNum(v);
  return String(v);
}

/** Horizontal bars: items [{label, value, text, tone}]. */
export function bars(items, max) {
  const top = max ?? Math.max(1, ...items.map((i) => i.value));
  return h("div.bars", items.map((i) => {
    const fill = h("span");
    fill.style.width = `${Math.max(0, Math.min(100, (i.value / top) * 100))}%`;
    return h("div.bar-row", h("span.label", { title: i.label }, i.label), h("div.bar" + (i.tone ? "." + i.tone : ""), fill), h("span.mono", i.text ?? fmtNum(i.value)));
  }));
}

export function facts(pairs) {
  return h("dl.facts", pairs.filter(Boolean).flatMap(([k, v]) => [h("dt", k), h("dd", v ?? "–")]));
}

export function fmtNum(n, digits) {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  if (digits !== undefined) return Number(n).toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
  const abs = Math.abs(n);
  if (abs > 0 && abs < 0.01) return Number(n).toPrecision(2);
  return Number(n).toLocaleString("en-US", { maximumFractionDigits: abs >= 100 ? 0 : abs >= 10 ? 1 : 2 });
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined) return "–";
  if (ms >= 1000) return `${fmtNum(ms / 1000, 2)} s`;
  if (ms < 1) return `${fmtNum(ms * 1000, 0)} µs`;
  return `${fmtNum(ms, ms < 10 ? 2 : 1)} ms`;
}

export function fmtPct(ratio) {
  if (ratio === null || ratio === undefined) return "–";
  const p = ratio * 100;
  return `${fmtNum(p, p > 0 && p < 1 ? 2 : 1)} %`;
}

export function fmtBytes(b) {
  if (b === null || b === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = Number(b);
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${fmtNum(v, i === 0 ? 0 : 1)} ${units[i]}`;
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

export function fmtTime(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z").replace(/Z$/, " UTC");
}

export function fmtAgo(iso) {
  if (!iso) return "–";
  const s = (Date.now() - new Date(iso).getTime()) / 1000;
  if (Number.isNaN(s)) return String(iso);
  if (s < 0) return "in " + fmtDuration(-s);
  return fmtDuration(s) + " ago";
}

/** A time with its age as the tooltip. */
export function when(iso) {
  return h("span.time", { title: fmtAgo(iso) }, fmtTime(iso));
}

export function json(value) {
  return h("pre", JSON.stringify(value, null, 2));
}
