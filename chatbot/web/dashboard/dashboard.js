// The operator dashboard: open alerts, the instances now, and charts over a time range,
// all from the admin API (an admin's bearer token, kept in sessionStorage). Refreshes
// itself every metrics interval. Charts are drawn with uPlot (served by the app).
"use strict";

const api = "/api/v1";
const $ = (id) => document.getElementById(id);
const TOKEN = "chatbot.adminToken";
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
let token = sessionStorage.getItem(TOKEN);
let challengeId = null;
let timer = null;
const charts = {};

async function call(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = "Bearer " + token;
  const response = await fetch(api + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store",
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error((data.error && data.error.message) || response.statusText);
    error.status = response.status;
    throw error;
  }
  return data;
}

// --- signing in: the chat's own phone + one-time code flow ------------------------------

function showSignin(message) {
  clearTimeout(timer);
  $("board").hidden = true;
  $("signout").hidden = true;
  $("signin").hidden = false;
  $("verify-form").hidden = true;
  $("start-form").hidden = false;
  $("signin-error").textContent = message || "";
  $("status").textContent = "not signed in";
}

function useToken(value) {
  token = value;
  sessionStorage.setItem(TOKEN, value);
  $("signin").hidden = true;
  $("board").hidden = false;
  $("signout").hidden = false;
  refresh();
}

$("start-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    token = null;
    const started = await call("POST", "/chat/start", { phoneNumber: $("phone").value });
    if (started.token) return useToken(started.token); // a new number: no admin, the API will say so
    challengeId = started.challengeId;
    $("start-form").hidden = true;
    $("verify-form").hidden = false;
    $("code").focus();
  } catch (error) {
    $("signin-error").textContent = error.message;
  }
});

$("verify-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const verified = await call("POST", "/chat/verify", { challengeId, code: $("code").value });
    useToken(verified.token);
  } catch (error) {
    $("signin-error").textContent = error.message;
  }
});

$("signout").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN);
  token = null;
  showSignin();
});

$("range").addEventListener("change", () => refresh());

// --- data -----------------------------------------------------------------------------

async function refresh() {
  clearTimeout(timer);
  let interval = 30;
  try {
    const range = Number($("range").value);
    const from = new Date(Date.now() - range * 1000).toISOString();
    const [current, history, open, resolved] = await Promise.all([
      call("GET", "/admin/metrics/current"),
      // 24 h of two instances at the default 30 s interval is 5,760 snapshots: within the limit.
      call("GET", "/admin/metrics/history?limit=10000&from=" + encodeURIComponent(from)),
      call("GET", "/admin/alerts?state=open"),
      call("GET", "/admin/alerts?state=resolved&from=" + encodeURIComponent(from)),
    ]);
    interval = current.intervalSeconds;
    renderAlerts(open.alerts, resolved.alerts);
    renderInstances(current.instances);
    renderCharts(history.snapshots, interval);
    $("board-error").textContent = "";
    $("status").textContent = `${current.instances.length} instance(s) reporting · updated ${time(new Date())}`;
    document.body.dataset.loaded = "1";
  } catch (error) {
    if (error.status === 401 || error.status === 403) {
      sessionStorage.removeItem(TOKEN);
      token = null;
      return showSignin(error.status === 403 ? "This number is not an admin." : error.message);
    }
    $("board-error").textContent = "Could not refresh: " + error.message;
  }
  // New snapshots come once per interval.
  timer = setTimeout(refresh, Math.max(interval, 1) * 1000);
}

function time(date) {
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function item(text, className) {
  const li = document.createElement("li");
  li.textContent = text;
  if (className) li.className = className;
  return li;
}

function renderAlerts(open, resolved) {
  const list = $("open-alerts");
  list.replaceChildren();
  for (const a of open) {
    list.appendChild(item(`${a.kind} on ${a.instance} since ${time(new Date(a.openedAt))}: ${a.message}`, "open"));
  }
  if (!open.length) list.appendChild(item("No open alerts.", "none"));
  const past = $("resolved-alerts");
  past.replaceChildren();
  for (const a of resolved) {
    past.appendChild(item(`${a.kind} on ${a.instance}: ${time(new Date(a.openedAt))} – ${time(new Date(a.resolvedAt))} (peak ${fmt(a.peak)})`));
  }
  if (!resolved.length) past.appendChild(item("None."));
}

function fmt(value, digits = 1) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

function mib(bytes) {
  return bytes / 1048576;
}

function duration(seconds) {
  const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60);
  return h ? `${h} h ${m} min` : `${m} min`;
}

function renderInstances(instances) {
  const body = $("instances").querySelector("tbody");
  body.replaceChildren();
  for (const s of instances) {
    const row = document.createElement("tr");
    const cells = [
      s.instance, fmt(s.throughput, 2), fmt(s.responseTime.average), fmt(s.responseTime.p95),
      `${s.errorCount} (${s.serverErrorCount} 5xx)`, s.activeConnections, fmt(s.cpu.percent),
      fmt(mib(s.memory.rss), 0), fmt(mib(s.memory.maxWorkerRss), 0), duration(s.uptime),
      time(new Date(s.timestamp)),
    ];
    for (const value of cells) {
      const td = document.createElement("td");
      td.textContent = value;
      row.appendChild(td);
    }
    body.appendChild(row);
  }
}

// --- charts ---------------------------------------------------------------------------

// Snapshots of several instances, aligned on interval-sized slots (uPlot wants one x axis).
function table(snapshots, interval) {
  const slots = new Map();
  const instances = [...new Set(snapshots.map((s) => s.instance))].sort();
  for (const s of snapshots) {
    const t = Math.round(Date.parse(s.timestamp) / 1000 / interval) * interval;
    if (!slots.has(t)) slots.set(t, {});
    slots.get(t)[s.instance] = s;
  }
  const xs = [...slots.keys()].sort((a, b) => a - b);
  return { xs, instances, rows: xs.map((x) => slots.get(x)) };
}

function perInstance(t, pick) {
  return t.instances.map((name) => t.rows.map((row) => (row[name] ? pick(row[name]) : null)));
}

function combined(t, pick) {
  return t.rows.map((row) => {
    const values = Object.values(row).map(pick).filter((v) => v !== null && v !== undefined);
    return values.length ? values : null;
  });
}

const sum = (values) => (values ? values.reduce((a, b) => a + b, 0) : null);
const max = (values) => (values ? Math.max(...values) : null);

function cacheRate(t, tier) {
  return t.rows.map((row) => {
    let hits = 0, looked = 0;
    for (const s of Object.values(row)) {
      const c = s.cache[tier];
      hits += c.hits;
      looked += c.hits + c.misses + c.errors;
    }
    return looked ? (100 * hits) / looked : null;
  });
}

function draw(id, labels, columns, xs) {
  const el = $(id);
  const width = Math.max(el.clientWidth || 440, 300);
  const key = labels.join("|");
  const data = [xs, ...columns];
  const existing = charts[id];
  if (existing && existing.key === key) {
    existing.plot.setData(data);
    return;
  }
  if (existing) existing.plot.destroy();
  const series = [{}, ...labels.map((label, i) => ({
    label, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: false, points: { show: true, size: 4 },
  }))];
  const plot = new uPlot({ width, height: 220, series, scales: { x: { time: true } } }, data, el);
  charts[id] = { key, plot };
}

function renderCharts(snapshots, interval) {
  const t = table(snapshots, interval);
  const names = t.instances;
  draw("chart-throughput", [...names, "all"], [
    ...perInstance(t, (s) => s.throughput), combined(t, (s) => s.throughput).map(sum),
  ], t.xs);
  draw("chart-latency", ["average", "p50", "p95", "p99"], ["average", "p50", "p95", "p99"].map(
    (k) => combined(t, (s) => s.responseTime[k]).map(max)), t.xs);
  draw("chart-errors", ["4xx", "5xx", "shed (429/503)"], [
    combined(t, (s) => s.clientErrorCount).map(sum),
    combined(t, (s) => s.serverErrorCount).map(sum),
    combined(t, (s) => sum(Object.values(s.shed))).map(sum),
  ], t.xs);
  draw("chart-memory", [...names, ...names.map((n) => n + " max worker")],
    [...perInstance(t, (s) => mib(s.memory.rss)), ...perInstance(t, (s) => mib(s.memory.maxWorkerRss))], t.xs);
  draw("chart-cpu", names, perInstance(t, (s) => s.cpu.percent), t.xs);
  draw("chart-cache", ["memory", "redis", "response"], ["memory", "redis", "response"].map((tier) => cacheRate(t, tier)), t.xs);
  // Deployment-wide (every instance's collector reads the same queue): the largest reading.
  const whatsapp = (k) => combined(t, (s) => (s.whatsapp ? s.whatsapp[k] : null)).map(max);
  draw("chart-whatsapp", ["inbox", "outbox", "oldest (s)"],
    [whatsapp("inbox"), whatsapp("outbox"), whatsapp("oldestWorkS")], t.xs);
}

if (typeof uPlot === "undefined") {
  document.body.insertAdjacentHTML("afterbegin",
    '<p class="error">The charting library is missing: run <code>make setup</code> (it copies uPlot into chatbot/web/dashboard/vendor/).</p>');
}
if (token) useToken(token);
else showSignin();
