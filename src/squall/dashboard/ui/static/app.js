/* Squall dashboard: a small single-page app over /_squall/api (no build step).  Pages are hash routes; the
   current page re-fetches its data every few seconds while the tab is visible. */
"use strict";

const REFRESH_MS = 4000;
const CSRF = document.querySelector('meta[name="csrf-token"]')?.content || "";
const main = document.getElementById("main");
const drawer = document.getElementById("drawer");
let page = null; // {refresh(), destroy()}
let timer = null;
let lastOk = Date.now();

// ------------------------------------------------------------------------------------------------ helpers
function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
function h(html) {
  const t = document.createElement("template");
  t.innerHTML = html.trim();
  return t.content.firstElementChild;
}
async function api(path, opts = {}) {
  const init = { credentials: "same-origin", headers: { Accept: "application/json" }, ...opts };
  if (init.method && init.method !== "GET") init.headers["X-Squall-CSRF"] = CSRF;
  const r = await fetch(path, init);
  if (r.status === 403 || r.status === 401) {
    const type = r.headers.get("x-amzn-ErrorType") || "";
    if (/MissingAuthentication|UnrecognizedClient|IncompleteSignature/i.test(type)) {
      location.href = "/ui/login?next=" + encodeURIComponent("/ui" + location.hash);
      throw new Error("signed out");
    }
  }
  const text = await r.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = { Message: text }; }
  if (!r.ok) {
    const err = new Error((body && (body.Message || body.message)) || `HTTP ${r.status}`);
    err.status = r.status;
    throw err;
  }
  return body;
}
const post = (path, data) => api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(data || {}) });

function fmtNum(n) {
  if (n == null) return "–";
  if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(n >= 1e7 ? 0 : 1) + "M";
  if (Math.abs(n) >= 1e4) return (n / 1e3).toFixed(n >= 1e5 ? 0 : 1) + "k";
  return Number.isInteger(n) ? n.toLocaleString("en-US") : n.toFixed(2);
}
function fmtMs(ms) {
  if (ms == null) return "–";
  if (ms >= 60000) return (ms / 60000).toFixed(1) + " min";
  if (ms >= 1000) return (ms / 1000).toFixed(ms >= 10000 ? 1 : 2) + " s";
  if (ms >= 100 || Number.isInteger(ms)) return ms.toFixed(0) + " ms";
  if (ms >= 10) return ms.toFixed(1) + " ms";
  return ms.toFixed(2) + " ms";
}
function fmtUsd(v) {
  if (v == null) return "–";
  if (v === 0) return "$0";
  if (Math.abs(v) >= 100) return "$" + v.toLocaleString("en-US", { maximumFractionDigits: 0 });
  if (Math.abs(v) >= 1) return "$" + v.toFixed(2);
  if (Math.abs(v) >= 0.01) return "$" + v.toFixed(3);
  return "$" + v.toPrecision(2);
}
function fmtPct(v) { return v == null ? "–" : (v >= 10 ? v.toFixed(0) : v.toFixed(1)) + "%"; }
function fmtAgo(ts) {
  if (!ts) return "never";
  const s = Math.max(0, Date.now() / 1000 - ts);
  if (s < 60) return Math.round(s) + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  if (s < 86400) return Math.round(s / 3600) + " h ago";
  return Math.round(s / 86400) + " d ago";
}
function fmtTime(ts) {
  const d = new Date(ts * 1000);
  const today = new Date().toDateString() === d.toDateString();
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  return today ? time : d.toLocaleDateString([], { month: "short", day: "numeric" }) + " " + time;
}
function fmtDur(s) {
  if (s == null) return "–";
  if (s < 90) return Math.round(s) + " s";
  if (s < 5400) return Math.round(s / 60) + " min";
  if (s < 172800) return (s / 3600).toFixed(1) + " h";
  return (s / 86400).toFixed(1) + " d";
}
function statusBadge(s) { return `<span class="badge ${esc(s)}">${esc(s)}</span>`; }
function toast(text, bad = false) {
  const t = document.getElementById("toast");
  t.textContent = text;
  t.className = "toast" + (bad ? " bad" : "");
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (t.hidden = true), 4500);
}
function empty(icon, title, hint = "") {
  return `<div class="empty"><div class="big">${icon}</div><div><b>${esc(title)}</b></div>${hint ? `<div>${hint}</div>` : ""}</div>`;
}
function query() {
  const i = location.hash.indexOf("?");
  return new URLSearchParams(i >= 0 ? location.hash.slice(i + 1) : "");
}
function setQuery(params) {
  const base = location.hash.split("?")[0] || "#/";
  const q = new URLSearchParams(Object.entries(params).filter(([, v]) => v != null && v !== ""));
  history.replaceState(null, "", base + (q.toString() ? "?" + q : ""));
}
const WINDOWS = { "1h": [3600, 60], "24h": [86400, 900], "7d": [604800, 7200] };

function spark(values, errors, w = 120, hgt = 28) {
  const max = Math.max(1, ...values);
  const pts = (arr) => arr.map((v, i) => `${((i / (arr.length - 1 || 1)) * w).toFixed(1)},${(hgt - 2 - (v / max) * (hgt - 4)).toFixed(1)}`).join(" ");
  const area = `0,${hgt} ${pts(values)} ${w},${hgt}`;
  const hasErr = errors.some((e) => e > 0);
  return `<svg class="spark" width="${w}" height="${hgt}" viewBox="0 0 ${w} ${hgt}" aria-label="invocations, last window">
    <polygon points="${area}" fill="var(--accent-soft)"/><polyline points="${pts(values)}" fill="none" stroke="var(--accent)" stroke-width="1.5"/>
    ${hasErr ? `<polyline points="${pts(errors)}" fill="none" stroke="var(--err)" stroke-width="1.2"/>` : ""}</svg>`;
}
function triggerChips(triggers) {
  if (!triggers || !triggers.length) return `<span class="muted">–</span>`;
  const names = { url: "URL", route: "HTTP", schedule: "cron", sqs: "SQS", s3: "S3" };
  return triggers
    .map((t) => `<span class="chip${t.enabled === false ? " off" : ""}" title="${esc(t.label)}${t.detail ? " · " + esc(t.detail) : ""}"><b>${names[t.type] || esc(t.type)}</b>${esc(t.label)}</span>`)
    .join("");
}

// ------------------------------------------------------------------------------------------------ charts
const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
function makeChart(el, series, opts = {}) {
  const width = Math.max(300, el.clientWidth || 400);
  const axisStroke = css("--muted");
  const grid = { stroke: css("--line"), width: 1 };
  const u = new uPlot(
    {
      width,
      height: opts.height || 200,
      cursor: { drag: { x: false, y: false } },
      legend: { live: true },
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.12 : 1] } },
      axes: [
        { stroke: axisStroke, grid, ticks: grid, space: 70, values: (u, vals) => vals.map(fmtTick(vals)) },
        { stroke: axisStroke, grid, ticks: grid, size: axisSize, values: (u, vals) => vals.map(opts.fmt || fmtNum) },
      ],
      series: [{}, ...series.map((s) => ({ spanGaps: false, width: 1.6, points: { show: false }, value: (u, v) => (v == null ? "–" : (opts.fmt || fmtNum)(v)), ...s }))],
    },
    [[], ...series.map(() => [])],
    el,
  );
  const ro = new ResizeObserver(() => u.setSize({ width: Math.max(300, el.clientWidth), height: opts.height || 200 }));
  ro.observe(el);
  u._ro = ro;
  return u;
}
function fmtTick(vals) {
  const span = vals.length > 1 ? vals[vals.length - 1] - vals[0] : 0;
  return (v) => {
    const d = new Date(v * 1000);
    const hm = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
    return span > 2 * 86400 ? d.toLocaleDateString([], { month: "short", day: "numeric" }) + (d.getHours() || d.getMinutes() ? " " + hm : "") : hm;
  };
}
function axisSize(u, values) {
  if (!values || !values.length) return 48;
  return Math.max(...values.map((v) => String(v).length)) * 7 + 18;
}
function bars() {
  return uPlot.paths && uPlot.paths.bars ? uPlot.paths.bars({ size: [0.7, 40] }) : undefined;
}

// ------------------------------------------------------------------------------------------------ overview
function overviewPage() {
  main.innerHTML = `
    <div class="page-head"><h1>Overview</h1><span class="sub">last hour</span></div>
    <div class="cards" id="cards"></div>
    <div class="panel"><div class="panel-head"><h2>Functions</h2><span class="muted" id="fn-count"></span></div>
      <div class="table-wrap" id="fn-table"></div></div>`;
  async function refresh() {
    const d = await api("/_squall/api/dashboard/overview?window=3600");
    const fns = d.functions;
    const tot = fns.reduce((a, f) => ({ inv: a.inv + f.stats.invocations, err: a.err + f.stats.errors, cost: a.cost + f.stats.cost_usd, cold: a.cold + f.stats.cold_starts }), { inv: 0, err: 0, cost: 0, cold: 0 });
    const errRate = tot.inv ? (tot.err / tot.inv) * 100 : 0;
    document.getElementById("cards").innerHTML = `
      <div class="card"><div class="label">Functions</div><div class="value">${fns.length}</div></div>
      <div class="card"><div class="label">Invocations</div><div class="value">${fmtNum(tot.inv)}<small>/ h</small></div></div>
      <div class="card ${tot.err ? "bad" : ""}"><div class="label">Errors</div><div class="value">${fmtNum(tot.err)}<small>${fmtPct(errRate)}</small></div></div>
      <div class="card"><div class="label">Cold starts</div><div class="value">${fmtNum(tot.cold)}<small>${fmtPct(tot.inv ? (tot.cold / tot.inv) * 100 : 0)}</small></div></div>
      <div class="card" title="at AWS Lambda prices"><div class="label">Cost · 1h</div><div class="value">${fmtUsd(tot.cost)}</div></div>
      <div class="card"><div class="label">Running now</div><div class="value">${d.pool.instances ?? 0}<small>instances</small></div></div>
      <div class="card"><div class="label">Async queue</div><div class="value">${fmtNum(d.async_queue.depth)}<small>${d.async_queue.depth ? "oldest " + fmtDur(d.async_queue.oldest_age_s) : "events"}</small></div></div>`;
    document.getElementById("fn-count").textContent = fns.length ? `${fns.length} deployed` : "";
    const table = document.getElementById("fn-table");
    if (!fns.length) {
      table.innerHTML = empty("λ", "No functions yet", "Deploy one with <code>squall deploy</code> or <code>aws lambda create-function</code>.");
      return;
    }
    table.innerHTML = `<table id="functions"><thead><tr><th>Function</th><th>Runtime</th><th class="num">Memory</th><th class="num">Timeout</th>
      <th>Triggers</th><th class="num">Invocations</th><th class="num">Errors</th><th class="num">p99</th><th class="num">Cost</th><th>Last hour</th><th>Last invoked</th></tr></thead>
      <tbody>${fns.map((f) => `<tr class="clickable" data-fn="${esc(f.name)}">
        <td class="name"><a href="#/functions/${encodeURIComponent(f.name)}">${esc(f.name)}</a>${f.state && f.state !== "Active" ? ` <span class="badge warn">${esc(f.state)}</span>` : ""}</td>
        <td>${esc(f.runtime || "–")}</td><td class="num">${f.memory_mb ?? "–"} MB</td><td class="num">${f.timeout_s ?? "–"} s</td>
        <td>${triggerChips(f.triggers)}</td>
        <td class="num">${fmtNum(f.stats.invocations)}</td>
        <td class="num ${f.stats.errors ? "err-text" : ""}">${fmtNum(f.stats.errors)}${f.stats.invocations ? ` <span class="muted">(${fmtPct((f.stats.errors / f.stats.invocations) * 100)})</span>` : ""}</td>
        <td class="num">${fmtMs(f.stats.p99_ms)}</td><td class="num">${fmtUsd(f.stats.cost_usd)}</td>
        <td>${spark(f.spark.invocations, f.spark.errors)}</td><td class="muted">${fmtAgo(f.stats.last_invoked)}</td></tr>`).join("")}</tbody></table>`;
    table.querySelectorAll("tr[data-fn]").forEach((tr) => tr.addEventListener("click", (e) => {
      if (e.target.tagName !== "A") location.hash = "#/functions/" + encodeURIComponent(tr.dataset.fn);
    }));
  }
  return { refresh };
}

// ------------------------------------------------------------------------------------------------ function
function functionPage(name) {
  let win = query().get("window") || "1h";
  if (!WINDOWS[win]) win = "1h";
  main.innerHTML = `
    <div class="page-head"><a href="#/" class="muted">Functions /</a><h1 id="fn-title">${esc(name)}</h1><span id="fn-state"></span>
      <span class="spacer"></span>
      <a class="btn btn-sm" href="#/invocations?function=${encodeURIComponent(name)}">Invocations →</a>
      <div class="seg" id="win">${Object.keys(WINDOWS).map((w) => `<button data-w="${w}" class="${w === win ? "on" : ""}">${w}</button>`).join("")}</div></div>
    <div class="cards" id="fn-cards"></div>
    <div class="charts" id="charts"></div>
    <div class="panel"><div class="panel-head"><h2>Configuration</h2></div><div class="kv" id="config"></div></div>
    <div class="panel"><div class="panel-head"><h2>Triggers</h2></div><div id="triggers"></div></div>
    <div class="panel"><div class="panel-head"><h2>Recent invocations</h2></div><div class="table-wrap" id="recent"></div></div>`;
  const defs = [
    ["inv", "Invocations", "per bucket", [{ label: "invocations", stroke: css("--accent"), fill: css("--accent-soft"), paths: bars() }, { label: "errors", stroke: css("--err"), fill: "rgba(220,38,38,.25)", paths: bars() }, { label: "throttles", stroke: css("--warn") }]],
    ["dur", "Duration", "p50 / p99", [{ label: "p50", stroke: css("--accent") }, { label: "p99", stroke: css("--violet") }], fmtMs],
    ["cold", "Cold-start rate", "% of invocations", [{ label: "cold starts", stroke: css("--warn"), fill: "rgba(217,119,6,.15)" }], fmtPct],
    ["conc", "Concurrency", "instances busy", [{ label: "max", stroke: css("--teal"), paths: uPlot.paths && uPlot.paths.stepped ? uPlot.paths.stepped({ align: 1 }) : undefined }, { label: "average", stroke: css("--muted"), dash: [4, 3] }]],
    ["cost", "Cost", "at Lambda prices", [{ label: "cost", stroke: css("--ok"), fill: "rgba(22,163,74,.15)" }], fmtUsd],
  ];
  const charts = {};
  const box = document.getElementById("charts");
  for (const [id, title, sub, series, fmt] of defs) {
    const el = h(`<div class="chart" id="chart-${id}"><h3>${title} <span class="muted">· ${sub}</span></h3><div class="plot"></div></div>`);
    box.appendChild(el);
    charts[id] = makeChart(el.querySelector(".plot"), series, { fmt });
  }
  document.getElementById("win").addEventListener("click", (e) => {
    const w = e.target.dataset?.w;
    if (!w) return;
    win = w;
    setQuery({ window: w });
    document.querySelectorAll("#win button").forEach((b) => b.classList.toggle("on", b.dataset.w === w));
    refresh();
  });
  let configShown = false;
  async function refresh() {
    const [span, step] = WINDOWS[win];
    const now = Date.now() / 1000;
    const since = Math.floor((now - span) / step) * step + step;
    const enc = encodeURIComponent(name);
    const [s, fn, recent] = await Promise.all([
      api(`/_squall/api/series?function=${enc}&since=${since}&until=${since + span}&step=${step}`),
      configShown ? null : api(`/_squall/api/dashboard/functions/${enc}`),
      api(`/_squall/api/invocations?function=${enc}&limit=10`),
    ]);
    const coldRate = s.invocations.map((n, i) => (n ? (s.cold_starts[i] / n) * 100 : null));
    const p = (arr) => arr.map((v) => (v == null ? null : v));
    charts.inv.setData([s.t, s.invocations, s.errors, s.throttles]);
    charts.dur.setData([s.t, p(s.p50_ms), p(s.p99_ms)]);
    charts.cold.setData([s.t, coldRate]);
    charts.conc.setData([s.t, s.max_concurrency, s.avg_concurrency]);
    charts.cost.setData([s.t, s.cost_usd]);
    const sum = (a) => a.reduce((x, y) => x + (y || 0), 0);
    const inv = sum(s.invocations), err = sum(s.errors), cold = sum(s.cold_starts);
    const p99s = s.p99_ms.filter((v) => v != null);
    document.getElementById("fn-cards").innerHTML = `
      <div class="card"><div class="label">Invocations · ${win}</div><div class="value">${fmtNum(inv)}</div></div>
      <div class="card ${err ? "bad" : ""}"><div class="label">Errors</div><div class="value">${fmtNum(err)}<small>${fmtPct(inv ? (err / inv) * 100 : 0)}</small></div></div>
      <div class="card"><div class="label">Worst p99</div><div class="value">${fmtMs(p99s.length ? Math.max(...p99s) : null)}</div></div>
      <div class="card"><div class="label">Cold starts</div><div class="value">${fmtNum(cold)}<small>${fmtPct(inv ? (cold / inv) * 100 : 0)}</small></div></div>
      <div class="card"><div class="label">Peak concurrency</div><div class="value">${Math.max(0, ...s.max_concurrency)}</div></div>
      <div class="card"><div class="label">Cost · ${win}</div><div class="value">${fmtUsd(sum(s.cost_usd))}</div></div>`;
    if (fn) {
      configShown = true;
      document.getElementById("fn-state").innerHTML = fn.state ? `<span class="badge ${fn.state === "Active" ? "ok" : "warn"}">${esc(fn.state)}</span>` : "";
      const kv = [
        ["Runtime", fn.runtime], ["Handler", fn.handler], ["Memory", fn.memory_mb + " MB"], ["Timeout", fn.timeout_s + " s"],
        ["Ephemeral storage", fn.ephemeral_mb ? fn.ephemeral_mb + " MB" : "–"],
        ["Reserved concurrency", fn.reserved_concurrency ?? "unreserved"],
        ["Provisioned", fn.provisioned.length ? fn.provisioned.map((p) => `${p.qualifier}: ${p.AllocatedProvisionedConcurrentExecutions ?? 0}/${p.RequestedProvisionedConcurrentExecutions}`).join(", ") : "none"],
        ["Versions", fn.versions.join(", ")], ["Aliases", fn.aliases.length ? fn.aliases.map((a) => `${a.name} → ${a.version}`).join(", ") : "none"],
        ["Environment", fn.environment.length ? fn.environment.join(", ") : "none"], ["Code size", fn.code_size != null ? fmtNum(fn.code_size) + " B" : "–"],
        ["Last modified", fn.last_modified], ["Async queue", fmtNum(fn.async_depth) + " events"], ["ARN", fn.arn],
      ];
      document.getElementById("config").innerHTML = kv.map(([k, v]) => `<div><span>${k}</span><b class="${k === "ARN" || k === "Handler" ? "mono" : ""}">${esc(v ?? "–")}</b></div>`).join("");
      const names = { url: "Function URL", route: "HTTP route", schedule: "Schedule", sqs: "SQS queue", s3: "S3 bucket" };
      document.getElementById("triggers").innerHTML = fn.triggers.length
        ? `<table><thead><tr><th>Type</th><th>Source</th><th>Details</th><th>State</th></tr></thead><tbody>${fn.triggers.map((t) => `<tr><td>${names[t.type] || esc(t.type)}</td><td class="mono">${esc(t.label)}</td><td class="muted">${esc(t.detail || "")}${t.last_fire ? " · last fired " + fmtAgo(t.last_fire) : ""}</td><td>${t.enabled === false ? '<span class="badge">disabled</span>' : '<span class="badge ok">enabled</span>'}</td></tr>`).join("")}</tbody></table>`
        : empty("⚡", "No triggers", "Invoked directly (Invoke API, SDKs). Add a function URL, a route, a schedule, an SQS mapping or an S3 notification.");
    }
    document.getElementById("recent").innerHTML = recent.invocations.length ? invocationTable(recent.invocations, false) : empty("∅", "No invocations recorded yet");
    bindInvocationRows(document.getElementById("recent"));
  }
  return { refresh, destroy: () => Object.values(charts).forEach((c) => { c._ro.disconnect(); c.destroy(); }) };
}

// ------------------------------------------------------------------------------------------------ invocations
function invocationTable(rows, showFn = true) {
  return `<table class="inv-table"><thead><tr><th>Started</th>${showFn ? "<th>Function</th>" : ""}<th>Status</th><th class="num">Duration</th><th class="num">Billed</th><th class="num">Init</th><th class="num">Memory</th><th>Trigger</th><th>Request id</th></tr></thead>
    <tbody>${rows.map((r) => `<tr class="clickable" data-rid="${esc(r.request_id)}"><td>${fmtTime(r.start)}</td>${showFn ? `<td class="name">${esc(r.function)}</td>` : ""}
      <td>${statusBadge(r.status)}${r.error_type && r.status !== "ok" ? ` <span class="muted">${esc(r.error_type)}</span>` : ""}</td>
      <td class="num">${fmtMs(r.duration_ms)}</td><td class="num">${fmtMs(r.billed_ms)}</td>
      <td class="num">${r.cold ? `<span class="badge cold">cold ${fmtMs(r.init_ms)}</span>` : '<span class="muted">warm</span>'}</td>
      <td class="num">${r.max_memory_mb}/${r.memory_mb} MB</td><td>${esc(r.trigger)}</td><td class="mono muted">${esc(r.request_id)}</td></tr>`).join("")}</tbody></table>`;
}
function bindInvocationRows(container) {
  container.querySelectorAll("tr[data-rid]").forEach((tr) => tr.addEventListener("click", () => {
    container.querySelectorAll("tr.selected").forEach((x) => x.classList.remove("selected"));
    tr.classList.add("selected");
    openInvocation(tr.dataset.rid);
  }));
}

async function openInvocation(rid) {
  drawer.hidden = false;
  drawer.innerHTML = `<div class="drawer-head"><h2 style="margin:0">Invocation</h2><span class="spacer"></span><button class="btn btn-sm" id="close-drawer">Close ✕</button></div><div class="muted">Loading…</div>`;
  drawer.querySelector("#close-drawer").onclick = closeDrawer;
  let d;
  try {
    d = await api(`/_squall/api/invocations/${encodeURIComponent(rid)}`);
  } catch (e) {
    drawer.querySelector(".muted").textContent = e.message;
    return;
  }
  const r = d.record;
  const init = r.cold && r.init_ms ? r.init_ms : 0;
  const total = init + Math.max(r.billed_ms, r.duration_ms) || 1;
  const pct = (v) => ((v / total) * 100).toFixed(2) + "%";
  const pad = Math.max(0, r.billed_ms - r.duration_ms);
  drawer.innerHTML = `
    <div class="drawer-head"><h2 style="margin:0">${esc(r.function)}</h2>${statusBadge(r.status)}${r.cold ? '<span class="badge cold">cold start</span>' : ""}
      <span class="spacer"></span><button class="btn btn-sm" id="close-drawer">Close ✕</button></div>
    <section><div class="kv">
      <div><span>Request id</span><b class="mono">${esc(r.request_id)}</b></div><div><span>Started</span><b>${new Date(r.start * 1000).toLocaleString()}</b></div>
      <div><span>Version</span><b>${esc(r.version)}</b></div><div><span>Trigger</span><b>${esc(r.trigger)}</b></div>
      <div><span>Memory used</span><b>${r.max_memory_mb} of ${r.memory_mb} MB</b></div>
      <div><span>Error</span><b class="${r.error_type ? "err-text" : ""}">${esc(r.error_type || "none")}</b></div>
      ${r.provisioned ? "<div><span>Instance</span><b>provisioned</b></div>" : ""}
    </div></section>
    <section><h2>Timing</h2>
      <div class="timing" id="timing">${init ? `<div class="init" style="width:${pct(init)}" title="init ${fmtMs(init)}">init</div>` : ""}<div class="run" style="width:${pct(r.duration_ms)}" title="duration ${fmtMs(r.duration_ms)}">handler</div>${pad ? `<div class="pad" style="width:${pct(pad)}" title="billing rounds up"></div>` : ""}</div>
      <div class="legend">${init ? `<span><i style="background:var(--warn)"></i>Init ${fmtMs(init)}</span>` : ""}<span><i style="background:var(--accent)"></i>Duration ${fmtMs(r.duration_ms)}</span><span><i style="background:var(--line)"></i>Billed ${fmtMs(r.billed_ms)}</span></div>
    </section>
    <section><h2>Logs <span class="muted">(${d.logs.length} lines)</span></h2>
      ${d.logs.length ? `<pre class="logs" id="logs">${d.logs.map((l) => `<span class="ts">${fmtTime(l.ts)}</span>${esc(l.text)}`).join("\n")}</pre>` : empty("📝", "No log lines")}</section>
    <section><h2>Trace</h2><div id="trace" class="muted">Loading…</div></section>`;
  drawer.querySelector("#close-drawer").onclick = closeDrawer;
  const traceBox = drawer.querySelector("#trace");
  try {
    const t = await api(`/_squall/api/traces?request_id=${encodeURIComponent(rid)}`);
    const trace = t && t.traces && t.traces[0];
    traceBox.className = "";
    traceBox.innerHTML = trace ? waterfall(trace) : noTrace(t, r);
  } catch (e) {
    traceBox.className = "";
    traceBox.innerHTML = empty("⋯", "Could not load the trace", esc(e.message || String(e)));
  }
}
// why an invocation has no trace: tracing off, not sampled (the usual case), or older than what the server keeps
function noTrace(t, r) {
  if (t && t.tracing === false) return empty("⋯", "Tracing is off", "SQUALL_TRACING=0 on this server");
  const s = t && t.sampling;
  if (s && t.kept_since != null && r.start >= t.kept_since) {
    const pct = `${+(s.ratio * 100).toFixed(2)}%`;
    const rule = s.reservoir_per_s ? `${s.reservoir_per_s}/s per function + ${pct} are traced`
      : s.ratio ? `${pct} are traced` : "only traces a caller marks as sampled are kept";
    return empty("⋯", `Not sampled: ${rule} (SQUALL_TRACE_RESERVOIR / SQUALL_TRACE_SAMPLE)`,
      "A caller's own decision (traceparent flags, X-Amzn-Trace-Id Sampled=) is always followed; SQUALL_TRACE_SAMPLE=1 traces every invocation.");
  }
  return empty("⋯", "No trace kept for this invocation",
    "It is older than the traces this server keeps in memory (SQUALL_TRACE_BUFFER, lost on restart), or it was not sampled.");
}
function waterfall(trace) {
  const spans = trace.spans || [];
  if (!spans.length) return empty("⋯", "The trace has no spans");
  const t0 = Math.min(...spans.map((s) => s.start));
  const t1 = Math.max(...spans.map((s) => s.end ?? s.start + (s.duration_ms || 0) / 1000));
  const total = Math.max(t1 - t0, 1e-6);
  const kids = {};
  const ids = new Set(spans.map((s) => s.span_id));
  for (const s of spans) {
    const p = s.parent_span_id && ids.has(s.parent_span_id) ? s.parent_span_id : "";
    (kids[p] = kids[p] || []).push(s);
  }
  const rows = [];
  const walk = (p, depth) => (kids[p] || []).sort((a, b) => a.start - b.start).forEach((s) => { rows.push([s, depth]); walk(s.span_id, depth + 1); });
  walk("", 0);
  return `<div class="muted" style="margin-bottom:6px">trace <span class="mono">${esc(trace.trace_id)}</span> · ${fmtMs(trace.duration_ms ?? total * 1000)} · ${spans.length} spans</div>
    <div class="wf">${rows.map(([s, depth]) => {
      const left = ((s.start - t0) / total) * 100;
      const width = Math.max(0.4, (((s.end ?? s.start) - s.start) / total) * 100);
      const bad = /error/i.test(s.status || "");
      const attrs = Object.entries(s.attributes || {}).map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join("\n");
      return `<div class="wf-row" title="${esc(s.name)}\n${esc(attrs)}"><div class="wf-name" style="padding-left:${depth * 14}px">${depth ? "└ " : ""}${esc(s.name)}</div>
        <div class="wf-track"><div class="wf-bar k-${esc(s.kind || "")} ${bad ? "error" : ""}" style="left:${left.toFixed(2)}%;width:${width.toFixed(2)}%"></div></div>
        <div class="num">${fmtMs(s.duration_ms)}</div></div>`;
    }).join("")}</div>`;
}
function closeDrawer() {
  drawer.hidden = true;
  drawer.innerHTML = "";
  document.querySelectorAll("tr.selected").forEach((x) => x.classList.remove("selected"));
}

function invocationsPage() {
  const q = query();
  let fn = q.get("function") || "";
  let status = q.get("status") || "";
  let paged = false;
  let cursor = null;
  main.innerHTML = `
    <div class="page-head"><h1>Invocations</h1><span class="spacer"></span>
      <div class="filters"><select id="f-fn"><option value="">All functions</option></select>
        <select id="f-status"><option value="">Any status</option><option>ok</option><option>error</option><option>timeout</option><option>throttled</option></select></div></div>
    <div class="panel"><div class="table-wrap" id="inv"></div>
      <div style="text-align:center;margin-top:10px"><button class="btn" id="more" hidden>Load older</button></div></div>`;
  const fSel = document.getElementById("f-fn"), sSel = document.getElementById("f-status");
  sSel.value = status;
  api("/_squall/api/dashboard/overview?window=3600").then((d) => {
    for (const f of d.functions) fSel.appendChild(h(`<option>${esc(f.name)}</option>`));
    fSel.value = fn;
  });
  const base = () => `/_squall/api/invocations?limit=50${fn ? "&function=" + encodeURIComponent(fn) : ""}${status ? "&status=" + status : ""}`;
  let rows = [];
  function render() {
    const box = document.getElementById("inv");
    box.innerHTML = rows.length ? invocationTable(rows) : empty("∅", "No invocations match", fn || status ? "Try another function or status." : "Invoke a function and it shows up here within a second.");
    bindInvocationRows(box);
    document.getElementById("more").hidden = !cursor;
  }
  async function refresh() {
    if (paged) return; // keep the pages the user loaded
    const d = await api(base());
    rows = d.invocations;
    cursor = d.next_cursor;
    render();
  }
  const changed = () => { fn = fSel.value; status = sSel.value; paged = false; setQuery({ function: fn, status }); refresh(); };
  fSel.onchange = changed;
  sSel.onchange = changed;
  document.getElementById("more").onclick = async () => {
    paged = true;
    const d = await api(base() + "&cursor=" + encodeURIComponent(cursor));
    rows = rows.concat(d.invocations);
    cursor = d.next_cursor;
    render();
  };
  if (q.get("request_id")) openInvocation(q.get("request_id"));
  return { refresh };
}

// ------------------------------------------------------------------------------------------------ queues
function queuesPage() {
  let view = query().get("view") || "";
  main.innerHTML = `
    <div class="page-head"><h1>Queues</h1><span class="sub">SQS queues, dead-letter queues and the async-invocation queue</span></div>
    <div class="panel"><div class="panel-head"><h2>SQS queues</h2></div><div class="table-wrap" id="queues"></div></div>
    <div class="panel" id="messages-panel" hidden></div>
    <div class="panel"><div class="panel-head"><h2>Async invocations</h2><span class="muted" id="async-sub"></span></div><div id="async"></div></div>`;
  async function showMessages() {
    const panel = document.getElementById("messages-panel");
    if (!view) { panel.hidden = true; return; }
    let d;
    try { d = await api(`/_squall/api/dashboard/queues/${encodeURIComponent(view)}/messages?limit=100`); } catch (e) { panel.hidden = true; return; }
    panel.hidden = false;
    const tasks = d.move_tasks.length ? `<div class="muted" style="margin-top:10px">Last redrive: ${esc(d.move_tasks[0].Status)} · ${d.move_tasks[0].ApproximateNumberOfMessagesMoved} moved · ${fmtAgo(d.move_tasks[0].StartedTimestamp / 1000)}${d.move_tasks[0].FailureReason ? " · " + esc(d.move_tasks[0].FailureReason) : ""}</div>` : "";
    panel.innerHTML = `<div class="panel-head"><h2>Messages in <span class="mono">${esc(view)}</span></h2><span class="muted">${d.messages.length} shown, oldest first · peeked, not received</span><span class="spacer"></span><button class="btn btn-sm" id="hide-msgs">Hide</button></div>
      ${d.messages.length ? `<div class="table-wrap"><table id="messages"><thead><tr><th>Message id</th><th>Body</th><th>Dead-lettered from</th><th class="num">Receives</th><th>Sent</th><th>State</th></tr></thead><tbody>
        ${d.messages.map((m) => `<tr><td class="mono muted">${esc(m.message_id)}</td><td class="mono msg-body" title="${esc(m.body)}">${esc(m.body)}</td><td>${m.dead_letter_source_arn ? esc(m.dead_letter_source_arn.split(":").pop()) : "–"}</td><td class="num">${m.receive_count}</td><td>${fmtAgo(m.sent_at)}</td><td>${m.visible ? '<span class="badge info">visible</span>' : '<span class="badge">in flight</span>'}</td></tr>`).join("")}
      </tbody></table></div>` : empty("✓", "The queue is empty")}${tasks}`;
    document.getElementById("hide-msgs").onclick = () => { view = ""; setQuery({}); showMessages(); };
  }
  async function redrive(name, btn) {
    btn.disabled = true;
    try {
      const d = await post(`/_squall/api/dashboard/queues/${encodeURIComponent(name)}/redrive`, {});
      const t = d.task;
      toast(t.Status === "COMPLETED" ? `Redrove ${t.ApproximateNumberOfMessagesMoved} message(s) from ${name} back to their source queue` : `Redrive ${t.Status}: ${t.FailureReason || ""}`, t.Status !== "COMPLETED");
    } catch (e) {
      toast("Redrive failed: " + e.message, true);
    }
    btn.disabled = false;
    refresh();
  }
  async function refresh() {
    const d = await api("/_squall/api/dashboard/queues");
    const box = document.getElementById("queues");
    box.innerHTML = d.queues.length ? `<table id="queue-table"><thead><tr><th>Queue</th><th class="num">Visible</th><th class="num">In flight</th><th class="num">Delayed</th><th>Dead-letter queue</th><th>Role</th><th class="num">Retention</th><th></th></tr></thead><tbody>
      ${d.queues.map((q) => `<tr data-q="${esc(q.name)}"><td class="name mono">${esc(q.name)}</td>
        <td class="num ${q.is_dlq && q.visible ? "err-text" : ""}"><b>${fmtNum(q.visible)}</b></td><td class="num">${fmtNum(q.in_flight)}</td><td class="num">${fmtNum(q.delayed)}</td>
        <td>${q.dead_letter_queue ? `<span class="chip"><b>→</b>${esc(q.dead_letter_queue)}</span> <span class="muted">after ${q.max_receive_count} receives</span>` : '<span class="muted">–</span>'}</td>
        <td>${q.is_dlq ? `<span class="badge ${q.visible ? "bad" : "warn"}">DLQ</span> <span class="muted">of ${q.dead_letter_for.map(esc).join(", ")}</span>` : ""}</td>
        <td class="num muted">${fmtDur(q.retention_s)}</td>
        <td class="num"><button class="btn btn-sm" data-act="view">Messages</button>${q.is_dlq ? ` <button class="btn btn-sm btn-primary" data-act="redrive" ${q.visible ? "" : "disabled"}>Redrive</button>` : ""}</td></tr>`).join("")}
      </tbody></table>` : empty("✉", "No SQS queues", "Create one with <code>aws sqs create-queue --queue-name jobs</code>.");
    box.querySelectorAll("button[data-act]").forEach((b) => b.addEventListener("click", () => {
      const name = b.closest("tr").dataset.q;
      if (b.dataset.act === "view") { view = name; setQuery({ view }); showMessages(); } else redrive(name, b);
    }));
    const a = d.async;
    document.getElementById("async-sub").textContent = `${fmtNum(a.depth)} queued${a.depth ? " · oldest " + fmtDur(a.oldest_age_s) : ""}`;
    document.getElementById("async").innerHTML = (a.by_function.length ? `<table><thead><tr><th>Function</th><th class="num">Queued</th><th class="num">Running</th><th class="num">Waiting to retry</th><th class="num">Oldest</th></tr></thead><tbody>
        ${a.by_function.map((f) => `<tr><td class="name"><a href="#/functions/${encodeURIComponent(f.function)}">${esc(f.function)}</a></td><td class="num">${f.depth}</td><td class="num">${f.in_flight}</td><td class="num ${f.retrying ? "err-text" : ""}">${f.retrying}</td><td class="num">${fmtDur(f.oldest_age_s)}</td></tr>`).join("")}</tbody></table>`
      : empty("✓", "No async invocations waiting", "Events (InvocationType=Event, schedules, S3 notifications) pass through here.")) +
      (a.retrying.length ? `<h2 style="margin-top:16px">Failed, waiting for a retry</h2><table><thead><tr><th>Function</th><th>Request id</th><th class="num">Attempts</th><th>Next attempt</th><th>Last error</th></tr></thead><tbody>
        ${a.retrying.map((e) => `<tr><td>${esc(e.function)}</td><td class="mono muted">${esc(e.request_id)}</td><td class="num">${e.attempt}</td><td>${fmtTime(e.next_attempt_at)}</td><td class="err-text mono">${esc(e.last_error || "")}</td></tr>`).join("")}</tbody></table>` : "");
    await showMessages();
  }
  return { refresh };
}

// ------------------------------------------------------------------------------------------------ usage
function usagePage() {
  const wins = { "1h": 3600, "24h": 86400, "7d": 604800, "30d": 2592000 };
  let win = query().get("window") || "24h";
  if (!wins[win]) win = "24h";
  main.innerHTML = `
    <div class="page-head"><h1>Usage &amp; cost</h1><span class="sub">what this work would cost on AWS Lambda, and when an always-on server is cheaper</span><span class="spacer"></span>
      <div class="seg" id="uwin">${Object.keys(wins).map((w) => `<button data-w="${w}" class="${w === win ? "on" : ""}">${w}</button>`).join("")}</div></div>
    <div class="cards" id="ucards"></div>
    <div class="panel"><div class="panel-head"><h2>Per function</h2></div><div class="table-wrap" id="usage"></div>
      <p class="muted" style="margin:12px 0 0">Break-even compares Lambda's monthly bill at the current request rate with an always-on server sized to the function's memory. Prices: <span id="prices"></span>.</p></div>`;
  document.getElementById("uwin").addEventListener("click", (e) => {
    if (!e.target.dataset?.w) return;
    win = e.target.dataset.w;
    setQuery({ window: win });
    document.querySelectorAll("#uwin button").forEach((b) => b.classList.toggle("on", b.dataset.w === win));
    refresh();
  });
  async function refresh() {
    const now = Date.now() / 1000;
    const d = await api(`/_squall/api/usage?since=${now - wins[win]}&until=${now}`);
    const t = d.totals;
    document.getElementById("ucards").innerHTML = `
      <div class="card"><div class="label">Requests · ${win}</div><div class="value">${fmtNum(t.requests)}</div></div>
      <div class="card ${t.errors ? "bad" : ""}"><div class="label">Errors</div><div class="value">${fmtNum(t.errors)}</div></div>
      <div class="card"><div class="label">Compute</div><div class="value">${fmtNum(Math.round(t.gb_seconds * 100) / 100)}<small>GB-s</small></div></div>
      <div class="card"><div class="label">Cost · ${win}</div><div class="value">${fmtUsd(t.cost.total)}</div></div>
      <div class="card"><div class="label">Projected / month</div><div class="value">${fmtUsd((t.cost.total / (d.until - d.since)) * 2592000)}</div></div>`;
    document.getElementById("prices").textContent = `$${d.prices.request_usd_per_million} per million requests, $${d.prices.duration_usd_per_gb_s} per GB-s, server $${d.prices.server_usd_per_gb_hour} per GB-hour`;
    const box = document.getElementById("usage");
    if (!d.functions.length) { box.innerHTML = empty("$", "No usage in this window"); return; }
    box.innerHTML = `<table id="usage-table"><thead><tr><th>Function</th><th class="num">Requests</th><th class="num">Errors</th><th class="num">p50</th><th class="num">p99</th><th class="num">Memory</th><th class="num">Avg billed</th><th class="num">GB-s</th><th class="num">Cost</th><th class="num">Req / month</th><th>Lambda vs always-on (monthly)</th><th class="num">Break-even</th></tr></thead><tbody>
      ${d.functions.map((f) => {
        const be = f.break_even;
        let cmp = '<span class="muted">–</span>';
        if (be) {
          const max = Math.max(be.lambda_monthly_usd, be.server_monthly_usd, 1e-9);
          cmp = `<div class="be-bar"><span style="width:${(be.lambda_monthly_usd / max) * 90}px;background:var(--accent)"></span>${fmtUsd(be.lambda_monthly_usd)} λ</div>
                 <div class="be-bar"><span style="width:${(be.server_monthly_usd / max) * 90}px;background:var(--muted)"></span>${fmtUsd(be.server_monthly_usd)} server</div>
                 <span class="badge ${be.cheaper === "lambda" ? "ok" : be.cheaper === "server" ? "warn" : ""}">${be.cheaper === "lambda" ? "serverless cheaper" : be.cheaper === "server" ? "always-on cheaper" : "equal"}</span>`;
        }
        return `<tr><td class="name"><a href="#/functions/${encodeURIComponent(f.function)}">${esc(f.function)}</a></td><td class="num">${fmtNum(f.requests)}</td>
          <td class="num ${f.errors ? "err-text" : ""}">${fmtNum(f.errors)}</td><td class="num">${fmtMs(f.p50_ms)}</td><td class="num">${fmtMs(f.p99_ms)}</td>
          <td class="num">${f.memory_mb ?? "–"} MB</td><td class="num">${fmtMs(f.avg_billed_ms)}</td><td class="num">${fmtNum(Math.round(f.gb_seconds * 100) / 100)}</td>
          <td class="num"><b>${fmtUsd(f.cost.total)}</b></td><td class="num">${be ? fmtNum(Math.round(be.requests_per_month)) : "–"}</td><td>${cmp}</td>
          <td class="num">${be ? (be.break_even_requests_per_month == null ? "never" : fmtNum(Math.round(be.break_even_requests_per_month)) + " / mo") : "–"}</td></tr>`;
      }).join("")}</tbody></table>`;
  }
  return { refresh };
}

// ------------------------------------------------------------------------------------------------ router
function route() {
  if (page && page.destroy) page.destroy();
  closeDrawer();
  const path = (location.hash.slice(1) || "/").split("?")[0];
  let name = "overview";
  if (path.startsWith("/functions/")) { name = "overview"; page = functionPage(decodeURIComponent(path.slice(11))); }
  else if (path === "/invocations") { name = "invocations"; page = invocationsPage(); }
  else if (path === "/queues") { name = "queues"; page = queuesPage(); }
  else if (path === "/usage") { name = "usage"; page = usagePage(); }
  else page = overviewPage();
  document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === name));
  tick();
}
async function tick() {
  clearTimeout(timer);
  const current = page;
  try {
    if (!document.hidden) await current.refresh();
    lastOk = Date.now();
  } catch (e) {
    if (e.message !== "signed out") console.warn(e);
  }
  document.getElementById("live").classList.toggle("stale", Date.now() - lastOk > REFRESH_MS * 3);
  if (current === page) timer = setTimeout(tick, REFRESH_MS);
}
document.getElementById("logout").onclick = async () => {
  try { await post("/ui/logout"); } catch { /* already signed out */ }
  location.href = "/ui/login";
};
document.addEventListener("keydown", (e) => { if (e.key === "Escape") closeDrawer(); });
document.addEventListener("visibilitychange", () => { if (!document.hidden) tick(); });
window.addEventListener("hashchange", route);
route();
