// The launch console: login, one EventSource for live updates, SVG charts drawn here. No build step.
"use strict";

const WINDOW_S = 300;
const COLORS = ["#1c7ed6", "#f08c00", "#2f9e44", "#e03131", "#7048e8", "#0c8599", "#d6336c", "#5c940d"];
const $ = (id) => document.getElementById(id);
const points = new Map(); // second -> the whole service's figures of that second
let stream = null;
let latest = null; // the last update: SKUs and levels
let skuTimer = null;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

function fmtTime(iso) {
  return iso ? new Date(iso).toLocaleTimeString() : "";
}

function setStatus(text, kind) {
  const status = $("status");
  status.textContent = text;
  status.className = "status " + (kind || "");
}

function show(view) {
  for (const id of ["login", "overview", "sku-page"]) $(id).hidden = id !== view;
  $("logout").hidden = view === "login";
}

async function send(method, url, body) {
  const options = { method, headers: {}, credentials: "same-origin" };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  return fetch(url, options);
}

// ---- Session ----------------------------------------------------------------------------

async function boot() {
  const response = await send("GET", "/console/api/session");
  if (response.ok) start();
  else showLogin("");
}

function showLogin(message) {
  stop();
  show("login");
  setStatus("", "");
  $("login-error").textContent = message;
  $("key").focus();
}

async function login(event) {
  event.preventDefault();
  const response = await send("POST", "/console/api/login", { key: $("key").value });
  $("key").value = "";
  if (response.status === 204) {
    start();
    return;
  }
  let detail = "login failed";
  try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
  $("login-error").textContent = detail;
}

async function logout() {
  await send("POST", "/console/api/logout");
  showLogin("Logged out.");
}

// ---- Live stream ------------------------------------------------------------------------

function start() {
  stop();
  route();
  setStatus("connecting…", "");
  stream = new EventSource("/console/api/stream");
  stream.onmessage = (message) => update(JSON.parse(message.data));
  stream.onerror = async () => {
    setStatus("reconnecting…", "down");
    const response = await send("GET", "/console/api/session");
    if (response.status === 401) showLogin("Your session ended: log in again.");
  };
}

function stop() {
  if (stream) stream.close();
  stream = null;
  if (skuTimer) clearInterval(skuTimer);
  skuTimer = null;
}

function update(data) {
  if (data.error) {
    setStatus(data.error, "down");
    return;
  }
  latest = data;
  for (const point of data.points) points.set(point.t, { ...points.get(point.t), ...point });
  for (const t of points.keys()) if (t < data.now - WINDOW_S) points.delete(t);
  setStatus("live · " + new Date(data.now * 1000).toLocaleTimeString(), "live");
  $("ledger-note").textContent = data.ledger ? "" : "No ledger reachable: no expiries or out-of-stock times.";
  renderSkus(data.skus);
  renderCharts(data);
  if (!$("sku-page").hidden) renderSkuLevels();
}

// ---- Overview ---------------------------------------------------------------------------

function levelCells(level) {
  return ["on_hand", "available", "reserved", "committed"].map((field) =>
    el("td", { "data-field": field }, String(level[field])));
}

function bar(level) {
  // The share of on-hand units still available, held and committed: it empties as it sells.
  const whole = Math.max(level.on_hand, level.available + level.reserved + level.committed, 1);
  const node = el("div", { class: "bar", title: `${level.available} of ${level.on_hand} left` });
  for (const part of ["available", "reserved", "committed"]) {
    const span = el("span", { class: part });
    span.style.width = (100 * Math.max(level[part], 0) / whole).toFixed(1) + "%";
    node.append(span);
  }
  return node;
}

function renderSkus(skus) {
  const body = $("skus").tBodies[0];
  const rows = [];
  for (const sku of skus) {
    const name = el("a", { href: "#/sku/" + encodeURIComponent(sku.sku) }, sku.sku);
    const since = el("td", { "data-field": "out_of_stock_since" }, fmtTime(sku.out_of_stock_since));
    if (sku.out_of_stock_since) since.className = "soldout";
    rows.push(el("tr", { class: "sku", "data-sku": sku.sku },
      el("td", {}, name), ...levelCells(sku.total), el("td", {}, bar(sku.total)), since,
      el("td", { "data-field": "backorders" }, String(sku.backorders))));
    for (const loc of sku.locations) {
      rows.push(el("tr", { class: "loc", "data-sku": sku.sku, "data-location": loc.location },
        el("td", {}, loc.location), ...levelCells(loc), el("td", {}, bar(loc)), el("td"), el("td")));
    }
  }
  body.replaceChildren(...rows);
  $("no-skus").hidden = skus.length > 0;
}

// ---- Charts -----------------------------------------------------------------------------

function series(pick) {
  const values = [];
  for (const t of [...points.keys()].sort((a, b) => a - b)) {
    const v = pick(points.get(t));
    if (v !== null && v !== undefined) values.push([t, v]);
  }
  return values;
}

function renderCharts(data) {
  const now = data.now;
  chart("flow", now, [
    { name: "reserves/s", values: series((p) => p.reserves) },
    { name: "commits/s", values: series((p) => p.commits) },
    { name: "expiries/s", values: series((p) => (data.ledger ? p.expiries : null)) },
  ]);
  const reasons = new Set();
  for (const p of points.values()) for (const code of Object.keys(p.refusals || {})) reasons.add(code);
  chart("refusals", now, [...reasons].sort().map((code) => ({
    name: code, values: series((p) => (p.refusals ? p.refusals[code] || 0 : null)),
  })));
  chart("latency", now, [
    { name: "p50", values: series((p) => p.p50_ms) },
    { name: "p99", values: series((p) => p.p99_ms) },
  ]);
  chart("lag", now, data.lag.map((lag) => ({
    name: "partition " + lag.partition,
    values: series((p) => (p.lag_ms ? p.lag_ms[lag.partition] / 1000 : null)),
  })));
}

function chart(name, now, lines) {
  const svg = $("chart-" + name);
  const width = svg.clientWidth || 400;
  const height = svg.clientHeight || 150;
  const left = 36, bottom = 16, top = 6;
  const all = lines.flatMap((line) => line.values.map((v) => v[1]));
  const max = niceMax(Math.max(1, ...all));
  const x = (t) => left + (width - left - 4) * (t - (now - WINDOW_S)) / WINDOW_S;
  const y = (v) => top + (height - top - bottom) * (1 - v / max);
  const ns = "http://www.w3.org/2000/svg";
  const make = (tag, attrs, text) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const nodes = [];
  for (const frac of [0, 0.5, 1]) {
    nodes.push(make("line", { class: "grid", x1: left, x2: width - 4, y1: y(max * frac), y2: y(max * frac) }));
    nodes.push(make("text", { class: "axis", x: left - 4, y: y(max * frac) + 3, "text-anchor": "end" }, fmtNumber(max * frac)));
  }
  for (const [label, t] of [["-5 min", now - WINDOW_S], ["now", now]]) {
    nodes.push(make("text", { class: "axis", x: x(t), y: height - 3, "text-anchor": label === "now" ? "end" : "start" }, label));
  }
  const legend = [];
  lines.forEach((line, i) => {
    const color = COLORS[i % COLORS.length];
    const pts = line.values.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    nodes.push(make("polyline", { points: pts, stroke: color }));
    const last = line.values.length ? line.values[line.values.length - 1][1] : null;
    if (line.values.length) { // the newest value as a dot: a lone point draws no line
      const [t, v] = line.values[line.values.length - 1];
      nodes.push(make("circle", { cx: x(t).toFixed(1), cy: y(v).toFixed(1), r: 2.5, fill: color }));
    }
    legend.push(el("span", { "data-series": line.name }, el("i"), line.name,
      el("b", {}, last === null ? "–" : fmtNumber(last))));
    legend[legend.length - 1].firstChild.style.background = color;
  });
  svg.replaceChildren(...nodes);
  $("legend-" + name).replaceChildren(...legend);
}

function niceMax(value) {
  const magnitude = Math.pow(10, Math.floor(Math.log10(value)));
  for (const step of [1, 2, 5, 10]) if (value <= step * magnitude) return step * magnitude;
  return 10 * magnitude;
}

function fmtNumber(value) {
  if (value >= 100 || Number.isInteger(value)) return String(Math.round(value));
  return value.toFixed(value >= 10 ? 1 : 2);
}

// ---- SKU page ---------------------------------------------------------------------------

function route() {
  if (skuTimer) clearInterval(skuTimer);
  skuTimer = null;
  const match = location.hash.match(/^#\/sku\/(.+)$/);
  if (!match) {
    show("overview");
    return;
  }
  const sku = decodeURIComponent(match[1]);
  show("sku-page");
  $("sku-title").textContent = sku;
  $("sku-page").dataset.sku = sku;
  loadSku(sku);
  skuTimer = setInterval(() => loadSku(sku), 5000); // ledger rows; levels come with each update
}

async function loadSku(sku) {
  const response = await send("GET", "/console/api/skus/" + encodeURIComponent(sku));
  if (response.status === 401) return showLogin("Your session ended: log in again.");
  if (!response.ok) {
    $("sku-title").textContent = sku + " (not found)";
    return;
  }
  const data = await response.json();
  renderConfig(data.config);
  renderLevels(data.inventory.locations.concat([data.inventory.total]));
  renderRows("sku-thresholds", data.threshold_events, (row) => [fmtTime(row.occurred_at), row.type, row.available]);
  renderRows("sku-ledger", data.transactions, (row) => [
    fmtTime(row.occurred_at), row.type, row.location, row.d_on_hand, row.d_reserved,
    row.d_committed, row.available, row.reservation_id, row.order_id,
  ]);
}

function renderSkuLevels() {
  const sku = $("sku-page").dataset.sku;
  const found = latest && latest.skus.find((s) => s.sku === sku);
  if (!found) return;
  const previous = Object.fromEntries([...$("sku-levels").tBodies[0].rows].map((r) => [r.dataset.location, r]));
  renderLevels(found.locations.concat([found.total]).map((level) => ({
    ...level,
    safety_stock: previous[level.location] ? previous[level.location].dataset.safety : "",
  })));
}

function renderLevels(levels) {
  $("sku-levels").tBodies[0].replaceChildren(...levels.map((level) => {
    const row = el("tr", { "data-location": level.location },
      el("td", {}, level.location === "*" ? "total" : level.location), ...levelCells(level),
      el("td", {}, String(level.safety_stock ?? "")), el("td", {}, String(level.backorder_limit ?? "")));
    row.dataset.safety = level.safety_stock ?? "";
    return row;
  }));
}

function renderConfig(config) {
  const items = [];
  for (const [name, value] of Object.entries(config)) {
    if (name === "sku" || name === "locations") continue;
    items.push(el("dt", {}, name.replaceAll("_", " ")), el("dd", {}, value === null ? "—" : String(value)));
  }
  items.push(el("dt", {}, "locations"), el("dd", {}, config.locations.map((l) => l.location).join(", ")));
  $("sku-config").replaceChildren(...items);
}

function renderRows(id, rows, cells) {
  const body = $(id).tBodies[0];
  if (rows === null) {
    body.replaceChildren(el("tr", {}, el("td", { colspan: "9", class: "muted" }, "No ledger reachable.")));
    return;
  }
  if (!rows.length) {
    body.replaceChildren(el("tr", {}, el("td", { colspan: "9", class: "muted" }, "None yet.")));
    return;
  }
  body.replaceChildren(...rows.map((row) => el("tr", {}, ...cells(row).map((v) => el("td", {}, v === null ? "" : String(v))))));
}

window.addEventListener("hashchange", () => { if (stream) route(); });
document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  boot();
});
