// The dashboard: the component tree and the 3D model, a part's entity, BOM, constraints and trace,
// the devices with their state, a device's live overlay and telemetry, and its simulation runs.
import { get, id, live } from "./api.js";
import { lineChart } from "./chart.js";
import { Viewer } from "./viewer.js";

const $ = (selector) => document.querySelector(selector);
const state = { manifest: null, device: null, deviceSocket: null, charts: {}, loaded: false, errors: [], lastSeq: null };
window.mf = state;  // for people poking at it in the console, and for the browser test

const viewer = new Viewer($("#scene"), $("#annotations"), (entityId) => selectEntity(entityId));
state.viewer = viewer;

function element(tag, props = {}, ...children) {
  const el = Object.assign(document.createElement(tag), props);
  el.append(...children);
  return el;
}

function report(error) {
  state.errors.push(String(error));
  $("#viewer-message").textContent = error.message || String(error);
}

// ---- the model ----------------------------------------------------------------------------------

async function loadProjects() {
  const projects = (await get("/projects")).filter((p) => p.models.length);
  const select = $("#project-select");
  select.replaceChildren(...projects.map((p) => element("option", { value: p.project_id, textContent: p.project_id })));
  select.onchange = () => loadModel(select.value);
  if (!projects.length) {
    $("#viewer-message").textContent = "No 3D model yet: parse a STEP file of the product (mf ingest PATH).";
    return;
  }
  await loadModel(new URLSearchParams(location.search).get("project") || projects[0].project_id);
}

async function loadModel(projectId) {
  const manifest = await get(`/projects/${id(projectId)}/model-manifest`);
  state.manifest = manifest;
  $("#component-tree").replaceChildren(treeItem(manifest.component_tree));
  const parts = await viewer.load(manifest.glb_url, manifest);
  state.loaded = true;
  $("#viewer-message").textContent = `${manifest.artifact_id} · ${parts} parts · updated ${manifest.last_updated}`;
}

function treeItem(node) {
  const label = element("span", { className: "item", textContent: node.name || node.id, title: node.id });
  label.dataset.entity = node.id;
  label.onclick = () => selectEntity(node.id);
  const li = element("li", {}, label);
  if (node.children.length) li.append(element("ul", {}, ...node.children.map(treeItem)));
  return li;
}

function markSelected(entityId) {
  for (const el of document.querySelectorAll(".item.selected")) el.classList.remove("selected");
  for (const el of document.querySelectorAll(`.item[data-entity="${CSS.escape(entityId)}"]`)) el.classList.add("selected");
}

// ---- an entity: properties, BOM, constraints, trace ---------------------------------------------------

async function selectEntity(entityId) {
  state.selected = entityId;
  markSelected(entityId);
  viewer.highlight(entityId);
  showPanel("entity");
  const [entity, bom, constraints, trace] = await Promise.all([
    get(`/entities/${id(entityId)}`), get(`/bom/items/${id(entityId)}`),
    get("/constraints", { entity: entityId }), get(`/trace/${id(entityId)}`, { depth: 3 })]);
  if (state.selected !== entityId) return;
  $("#entity-title").textContent = entity.id;
  $("#entity-meta").textContent = `version ${entity.version} · updated ${entity.updatedAt} by ${entity.updatedBy}`;
  $("#entity-properties").replaceChildren(...propertyRows(entity.properties));
  $("#entity-bom").replaceChildren(bom.items.length ? bomTable(bom) : element("p", { className: "dim", textContent: "no BOM items" }));
  $("#entity-constraints").replaceChildren(...(constraints.verdicts.length ? constraints.verdicts.map((v) =>
    element("li", { className: `verdict ${v.status}`, textContent: v.message })) : [element("li", { className: "dim", textContent: "none" })]));
  $("#entity-trace").replaceChildren(...trace.reached.map((r) => {
    const item = element("span", { className: "item", textContent: `${"· ".repeat(r.distance - 1)}${r.id}` });
    item.onclick = () => selectEntity(r.id);
    return element("li", {}, item);
  }));
}

function propertyRows(properties) {
  return Object.entries(properties).sort().map(([key, value]) =>
    element("tr", {}, element("td", { textContent: key }), element("td", { textContent: show(value) })));
}

function show(value) {
  if (value && typeof value === "object" && "value" in value && "unit" in value) return `${value.value} ${value.unit}`;
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

function bomTable(bom) {
  const rows = bom.items.map((item) => {
    const p = item.properties;
    return element("tr", {}, element("td", { textContent: item.id }),
                   element("td", { textContent: [p.mpn, p.manufacturer, p.quantity && `× ${p.quantity}`].filter(Boolean).join(" · ") }));
  });
  const cost = Object.entries(bom.cost).map(([c, v]) => `${v.toFixed(2)} ${c}`).join(", ");
  if (cost) rows.push(element("tr", {}, element("td", { textContent: "cost" }), element("td", { textContent: cost })));
  return element("table", { className: "props" }, ...rows);
}

// ---- devices: state, live overlay, telemetry, simulations ----------------------------------------------

async function loadDevices() {
  const { devices } = await get("/devices");
  $("#device-list").replaceChildren(...devices.map((d) => {
    const item = element("span", { className: "item", textContent: d.name + " " },
                         element("span", { className: `badge ${d.properties.health || "unknown"}`, textContent: d.properties.health || "unknown" }));
    item.dataset.device = d.name;
    item.onclick = () => selectDevice(d.name);
    return element("li", {}, item);
  }));
}

async function selectDevice(name) {
  state.device = name;
  state.deviceSocket?.close();
  showPanel("device");
  const [device, held, sims] = await Promise.all([get(`/devices/${id(name)}`), get(`/devices/${id(name)}/telemetry`),
                                                  get("/simulations", { device: name })]);
  $("#device-title").textContent = device.id;
  const p = device.properties;
  $("#device-meta").textContent = [p.status, p.firmware_version && `fw ${p.firmware_version}`, p.location,
                                   `health ${p.health || "unknown"}`].filter(Boolean).join(" · ");
  $("#device-live").replaceChildren();
  const charts = $("#device-charts");
  charts.replaceChildren();
  state.charts = {};
  const units = Object.fromEntries(device.sources.map((s) => [s.metric, s.unit]));
  await Promise.all(held.metrics.map(async ({ metric }) => {
    const { points } = await get(`/devices/${id(name)}/telemetry`, { metric, since: "1h", every: "10s", agg: "mean" });
    state.charts[metric] = lineChart(charts, [points.map((pt) => [pt.t, pt.value])], { title: metric, unit: units[metric] });
  }));
  showSimulations(sims.runs);
  state.deviceSocket = live(`/ws/devices/${encodeURIComponent(name)}`,
                            // "dropped": overlays this page was too slow for (the next one is current again)
                            (m) => (m.type === "overlay" ? applyOverlay(name, m, units) : null),
                            (s) => setConnection(s));
}

function applyOverlay(name, overlay, units) {
  if (state.device !== name) return;
  state.overlay = overlay;
  viewer.applyOverlay(overlay);
  $("#device-live").replaceChildren(...overlay.annotations.map((a) => {
    const row = element("tr", {}, element("td", { textContent: a.label }),
                        element("td", {}, element("span", { className: `badge ${a.status}`, textContent: a.status }),
                                ` ${Number(a.value).toFixed(3)}${a.unit ? " " + a.unit : ""}`));
    row.dataset.metric = a.metric;
    return row;
  }));
  for (const [metric, rows] of Object.entries(overlay.samples || {})) {
    if (!state.charts[metric]) state.charts[metric] = lineChart($("#device-charts"), [[]], { title: metric, unit: units[metric] });
    state.charts[metric].append(0, rows.map(([t, v]) => [t / 1e6, v]));
  }
  const badge = document.querySelector(`.item[data-device="${CSS.escape(name)}"] .badge`);
  if (badge) { badge.className = `badge ${overlay.health}`; badge.textContent = overlay.health; }
}

function showSimulations(runs) {
  const box = $("#device-simulations");
  box.replaceChildren();
  if (!runs.length) box.append(element("p", { className: "dim", textContent: "none" }));
  for (const run of runs) {
    const p = run.properties;
    box.append(element("p", {}, element("strong", { textContent: run.name }), ` ${p.scenario || ""} · ${p.result || ""}`));
    const curves = p.outputs?.curves;
    if (!curves) continue;
    for (const [name, columns] of Object.entries(curves.values)) {
      const series = columns.map((col) => col.map((v, i) => [curves.t_s[i], v]));
      lineChart(box, series, { title: name, unit: curves.units?.[name] });
    }
  }
}

function showPanel(which) {
  $("#entity-panel").hidden = which !== "entity";
  $("#device-panel").hidden = which !== "device";
  $("#details-empty").hidden = Boolean(which);
}

// ---- status and events ------------------------------------------------------------------------------

function setConnection(text) {
  const badge = $("#connection");
  badge.textContent = text;
  badge.className = `badge ${text === "live" ? "nominal" : "stale"}`;
}

async function loadStatus() {
  const status = await get("/status");
  $("#twin-name").textContent = status.root.split("/").pop();
  $("#twin-version").textContent = `semantic version ${status.semantic_version} · ${status.entities} entities`;
  document.title = `mf · ${status.root.split("/").pop()}`;
}

function onEvent({ event }) {
  state.lastSeq = event.seq;
  const feed = $("#event-feed");
  feed.prepend(element("li", { textContent: `#${event.seq} ${event.type} ${event.entity} by ${event.actor}${event.msg ? " — " + event.msg : ""}` }));
  while (feed.children.length > 200) feed.lastChild.remove();
  $("#twin-version").textContent = `semantic version ${event.seq}`;
  if (event.entity === state.selected) selectEntity(state.selected);
  if (event.type === "device.state_updated") loadDevices();
}

async function start() {
  // after a reconnect, every event since the last one shown: the server pages them from the log
  live(() => (state.lastSeq ? `/ws/events?since_seq=${state.lastSeq}` : "/ws/events"), onEvent, setConnection);
  await Promise.all([loadStatus(), loadDevices(), loadProjects()]);
  state.ready = true;
}

start().catch(report);
