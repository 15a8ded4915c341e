// The web view: the server's JSON API, nothing else. The lines at risk
// come from a watch (WatchAtRiskLines), so the page changes when the
// answer does, without polling; the feed follows StreamLicenseUpdates.
"use strict";

const RISK = "/lodestone.v1.RiskService/";
const RECORDS = "/lodestone.v1.RecordService/";
const $ = (id) => document.getElementById(id);

// ---- Calls -------------------------------------------------------------

function headers(extra) {
  const h = { "Content-Type": "application/json", ...extra };
  const token = sessionStorage.getItem("lodestone-token");
  if (token) h.Authorization = "Bearer " + token;
  return h;
}

// A refusal as a person should read it.
async function failure(response) {
  let message = response.statusText;
  try {
    message = (await response.json()).message || message;
  } catch (_) { /* not JSON */ }
  if (response.status === 401) {
    message = provider
      ? "This server asks who you are: sign in, or enter a reader token above."
      : "This server asks for a token: enter a reader token above.";
  }
  const error = new Error(message);
  error.status = response.status;
  return error;
}

async function call(method, body) {
  const response = await fetch(method, {
    method: "POST", headers: headers(), body: JSON.stringify(body),
  });
  if (!response.ok) throw await failure(response);
  return response.json();
}

// Reads a server stream of newline-delimited JSON until it ends or
// `signal` aborts it, handing each message to `onMessage`.
async function stream(method, body, onMessage, signal) {
  const response = await fetch(method, {
    method: "POST",
    headers: headers({ Accept: "application/x-ndjson" }),
    body: JSON.stringify(body),
    signal,
  });
  if (!response.ok) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, end).trim();
      buffer = buffer.slice(end + 1);
      if (!line) continue;
      const message = JSON.parse(line);
      if (message.error) {
        const error = new Error(message.error.message);
        error.status = 500;
        throw error;
      }
      onMessage(message);
    }
  }
}

// Keeps a stream open: opens it again a few seconds after it breaks,
// until `signal` aborts it. `body()` is asked again at each opening.
async function follow(method, body, onMessage, signal) {
  while (!signal.aborted) {
    try {
      await stream(method, body(), onMessage, signal);
    } catch (error) {
      if (signal.aborted) return;
      say(error.message, true);
      if (error.status && error.status < 500) return;
    }
    await new Promise((resolve) => setTimeout(resolve, 3000));
  }
}

function say(text, error = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
}

// ---- The question ------------------------------------------------------

function today() {
  return new Date().toISOString().slice(0, 10);
}

// The airfreight arrival the planner filled in, once it is whole.
function airfreight() {
  const componentId = $("air-component").value.trim();
  const units = Number($("air-units").value);
  const arrivesOn = $("air-on").value;
  return componentId && units > 0 && arrivesOn ? { componentId, units, arrivesOn } : null;
}

function question() {
  const pending = document.querySelector("input[name=pending]:checked").value;
  const scenario = { pending, decisionDelayDays: Number($("delay").value) || 0 };
  if ($("idle").value) scenario.idledLines = [$("idle").value];
  const air = airfreight();
  if (air) scenario.shipments = [air];
  return {
    asOf: $("as-of").value,
    horizonDays: Number($("horizon").value) || 90,
    plant: $("plant").value,
    scenario,
  };
}

// What the address asked that the page could not show: said, not
// silently replaced.
const warnings = [];

function warn(text) {
  warnings.push(text);
  $("warning").textContent = warnings.join(" ");
  $("warning").hidden = false;
}

// A calendar date written YYYY-MM-DD.
function isDate(text) {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(text)) return false;
  const day = new Date(text + "T00:00:00Z");
  return !Number.isNaN(day.getTime()) && day.toISOString().slice(0, 10) === text;
}

// `date` plus `days`, YYYY-MM-DD.
function addDays(date, days) {
  const day = new Date(date + "T00:00:00Z");
  day.setUTCDate(day.getUTCDate() + days);
  return day.toISOString().slice(0, 10);
}

// The question from the address (so that a view can be shared), then the
// address from the question.
function readAddress() {
  const params = new URLSearchParams(location.search);
  // The day the server opens the page on (the demonstration network's),
  // else today.
  const opensOn = (document.querySelector("meta[name=lodestone-opens-on]") || {}).content;
  const asOf = params.get("as_of");
  if (asOf !== null && !isDate(asOf)) {
    warn(`The address's as_of "${asOf}" is not a date written YYYY-MM-DD: showing ${opensOn || "today"}.`);
  }
  $("as-of").value = asOf !== null && isDate(asOf) ? asOf : opensOn || today();
  const number = (name, id, min, max) => {
    const text = params.get(name);
    if (text === null) return;
    const n = Number(text);
    if (Number.isInteger(n) && n >= min && n <= max) $(id).value = text;
    else warn(`The address's ${name} "${text}" is not a whole number from ${min} to ${max}: showing ${$(id).value}.`);
  };
  number("horizon", "horizon", 1, 730);
  number("delay", "delay", 0, 730);
  const pending = params.get("pending");
  if (pending) {
    const radio = document.querySelector(`input[name=pending][value="${pending}"]`);
    if (radio) radio.checked = true;
    else warn(`The address's pending "${pending}" is not an assumption this page knows: pending licences are denied.`);
  }
  $("air-component").value = params.get("air_component") || "";
  $("air-units").value = params.get("air_units") || "";
  const airOn = params.get("air_on") || "";
  if (airOn && !isDate(airOn)) warn(`The address's air_on "${airOn}" is not a date written YYYY-MM-DD.`);
  $("air-on").value = airOn;
  return { plant: params.get("plant") || "", idle: params.get("idle") || "" };
}

function writeAddress() {
  const q = question();
  const params = new URLSearchParams({ as_of: q.asOf, horizon: q.horizonDays });
  if (q.plant) params.set("plant", q.plant);
  if (q.scenario.pending !== "PENDING_ASSUMPTION_DENIED") params.set("pending", q.scenario.pending);
  if (q.scenario.decisionDelayDays) params.set("delay", q.scenario.decisionDelayDays);
  if (q.scenario.idledLines) params.set("idle", q.scenario.idledLines[0]);
  const air = airfreight();
  if (air) {
    params.set("air_component", air.componentId);
    params.set("air_units", air.units);
    params.set("air_on", air.arrivesOn);
  }
  history.replaceState(null, "", "?" + params);
}

// Names to show beside codes: suppliers and materials loaded once,
// components as lines name them.
const names = { suppliers: new Map(), materials: new Map(), components: new Map() };

async function loadNames() {
  for (const [method, list, key, into] of [
    ["ListSuppliers", "suppliers", "id", names.suppliers],
    ["ListMaterials", "materials", "code", names.materials],
  ]) {
    let pageToken = "";
    do {
      const page = await call(RECORDS + method, { pageSize: 1000, pageToken });
      (page[list] || []).forEach((r) => into.set(r[key], r));
      pageToken = page.nextPageToken || "";
    } while (pageToken);
  }
}

const named = (map, id) => {
  const record = map.get(id);
  return record && record.name ? `${record.name} (${id})` : id;
};

// Fetches the names of components not known yet, then draws the lines again.
let naming = false;
async function nameComponents(ids) {
  const missing = [...new Set(ids)].filter((id) => !names.components.has(id));
  if (!missing.length || naming) return;
  naming = true;
  try {
    const found = await Promise.all(missing.map((id) =>
      call(RECORDS + "GetComponent", { id }).catch(() => ({ id }))));
    found.forEach((c, i) => names.components.set(missing[i], c));
  } finally {
    naming = false;
  }
  renderLines();
}

// What a line runs out of, in words: the part at the end of its root-cause
// path and the licence pools (supplier, material) or suppliers that fail it.
function runsOut(line) {
  if (line.idled) return "nothing: idled by the scenario";
  const path = line.rootCausePath || [];
  const part = path.length ? named(names.components, path[path.length - 1]) : "–";
  const causes = (line.blockingPools || []).map((p) =>
    `${named(names.suppliers, p.supplierId)} · ${(names.materials.get(p.material) || {}).name || p.material}`);
  (line.blockingSupplierIds || []).forEach((id) => causes.push(`${named(names.suppliers, id)} out`));
  return causes.length ? `${part}, for want of ${causes.join("; ")}` : part;
}

// Every production line, by id: the plants and the lines to idle are
// chosen from them, and a line's bill of materials names the components
// whose inbound shipments it lists.
const lineRecords = new Map();

async function loadLines(chosen) {
  lineRecords.clear();
  let pageToken = "";
  do {
    const page = await call(RECORDS + "ListProductionLines", { pageSize: 1000, pageToken });
    (page.lines || []).forEach((line) => lineRecords.set(line.id, line));
    pageToken = page.nextPageToken || "";
  } while (pageToken);
  const plants = new Set([...lineRecords.values()].map((line) => line.plant));
  const select = $("plant");
  select.length = 1;
  [...plants].sort().forEach((plant) => select.add(new Option(plant, plant)));
  select.value = plants.has(chosen.plant) ? chosen.plant : "";
  if (chosen.plant && !plants.has(chosen.plant)) {
    warn(`No plant "${chosen.plant}" (the address's plant): showing every plant.`);
  }
  const idle = $("idle");
  idle.length = 1;
  [...lineRecords.keys()].sort().forEach((id) => idle.add(new Option(id, id)));
  idle.value = lineRecords.has(chosen.idle) ? chosen.idle : "";
  if (chosen.idle && !lineRecords.has(chosen.idle)) {
    warn(`No line "${chosen.idle}" (the address's idle): no line is idled.`);
  }
}

// ---- Lines at risk, from the watch -------------------------------------

const lines = new Map();
let chosen = null;
let horizon = 90;

// The model's at-risk order: days to stop, then units lost (to 3 places)
// descending, then id.
function atRiskOrder(a, b) {
  return (a.daysToStop || 0) - (b.daysToStop || 0)
    || Math.round((b.unitsLost || 0) * 1000) - Math.round((a.unitsLost || 0) * 1000)
    || (a.lineId < b.lineId ? -1 : a.lineId > b.lineId ? 1 : 0);
}

const units = (n) => Math.round(n || 0).toLocaleString("en");
const percent = (f) => Math.round((f || 0) * 100) + "%";

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function renderLines() {
  const body = $("lines").tBodies[0];
  body.replaceChildren();
  const ordered = [...lines.values()].sort(atRiskOrder);
  $("no-lines").hidden = ordered.length > 0;
  for (const line of ordered) {
    const row = body.insertRow();
    row.dataset.line = line.lineId;
    if (line.lineId === chosen) row.className = "chosen";
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = line.lineId;
    button.setAttribute("aria-expanded", String(line.lineId === chosen));
    button.setAttribute("aria-controls", "why");
    button.addEventListener("click", () => {
      chosen = chosen === line.lineId ? null : line.lineId;
      renderLines();
    });
    row.insertCell().append(button);
    cell(row, line.plant);
    cell(row, line.idled ? "idled" : line.stopDate, "stop-date");
    const track = document.createElement("div");
    track.className = "track";
    track.setAttribute("aria-hidden", "true");
    const share = Math.min(1, (line.daysToStop || 0) / horizon);
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.width = share * 100 + "%";
    const stop = document.createElement("div");
    stop.className = "stop" + ((line.outputFraction || 0) > 0 ? " partial" : "");
    stop.style.left = `calc(${share * 100}% - 1px)`;
    track.append(bar, stop);
    const when = cell(row, "");
    when.append(track);
    when.title = `${line.daysToStop} days`;
    cell(row, percent(line.outputFraction), "number output");
    cell(row, units(line.unitsLost), "number");
    cell(row, runsOut(line), "runs-out");
    cell(row, chance(line.lineId), "chance");
  }
  const asOf = question().asOf;
  $("axis-from").textContent = asOf;
  $("axis-to").textContent = isDate(asOf) ? addDays(asOf, horizon) : "";
  nameComponents(ordered.flatMap((line) => line.rootCausePath || []));
  renderWhy();
}

// ---- Forecasts ---------------------------------------------------------

const SAMPLES = 200;
const forecasts = new Map();

// The chance a line stops within the horizon, and its P10–P90 stop dates
// (a percentile that runs on reads "runs on").
function chance(lineId) {
  const f = forecasts.get(lineId);
  if (!f) return "–";
  const asOf = question().asOf;
  const at = (days) => (days === undefined ? "runs on" : addDays(asOf, days));
  return `${percent(f.stopProbability)} (${at(f.daysToStopP10)} – ${at(f.daysToStopP90)})`;
}

async function refreshForecasts() {
  try {
    const answer = await call(RISK + "ListLineForecasts", {
      ...question(), samples: SAMPLES, seed: 1, pageSize: 1000,
    });
    forecasts.clear();
    (answer.forecasts || []).forEach((f) => forecasts.set(f.lineId, f));
    $("forecast-note").textContent = `Chances from ${answer.samples} sampled futures of the `
      + "pending licences, each granted or not by its material's record.";
    renderLines();
  } catch (error) {
    say(error.message, true);
  }
}

function renderWhy() {
  const why = $("why");
  why.replaceChildren();
  const line = chosen && lines.get(chosen);
  if (!line) return;
  const article = document.createElement("article");
  const title = document.createElement("h3");
  const list = document.createElement("dl");
  const item = (term, value) => {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = value;
    list.append(dt, dd);
    return dd;
  };
  const inbound = document.createElement("ul");
  inbound.id = "inbound";
  article.append(title, list);
  why.append(article);
  if (line.idled) {
    title.textContent = `${line.lineId} is idled by the scenario`;
    item("Units not built over the horizon", units(line.unitsLost));
    return;
  }
  title.textContent = `Why ${line.lineId} stops on ${line.stopDate}`;
  const path = line.rootCausePath || [];
  if ((line.shortfallUnits || 0) > 0 && path.length) {
    item("Expedite",
      `${units(line.shortfallUnits)} × ${path[path.length - 1]} by ${line.stopDate}`)
      .className = "expedite";
  }
  item("Runs out of", line.bottleneckComponentId || "–");
  item("Root cause path", (line.rootCausePath || []).join(" ← ") || "–").className = "path";
  item("Uncovered licence pools",
    (line.blockingPools || []).map((p) => `${p.supplierId} · ${p.material}`).join(", ") || "none");
  const licences = item("Their licences", (line.blockingLicenseIds || []).join(", ") || "none");
  licences.id = "licences";
  statuses(line.blockingLicenseIds || [], licences);
  if ((line.blockingSupplierIds || []).length) {
    item("Suppliers out", line.blockingSupplierIds.join(", "));
  }
  item("Builds on its stop day", percent(line.outputFraction));
  item("Units lost over the horizon", units(line.unitsLost));
  item("Inbound shipments", "").append(inbound);
  listInbound(line, inbound);
}

// Each licence with its status, as the store has it now.
async function statuses(ids, into) {
  if (!ids.length) return;
  try {
    const found = await Promise.all(ids.map((id) => call(RECORDS + "GetLicense", { id })));
    into.textContent = found.map((l) =>
      `${l.id} (${(l.status || "").replace("LICENSE_STATUS_", "").toLowerCase()})`).join(", ");
  } catch (error) {
    say(error.message, true);
  }
}

// The shipments on their way for the components the line fits and those
// down its root-cause path, soonest first.
async function listInbound(line, list) {
  const record = lineRecords.get(line.lineId);
  const components = new Set([
    ...((record && record.bom) || []).map((entry) => entry.componentId),
    ...(line.rootCausePath || []),
  ]);
  try {
    const pages = await Promise.all([...components].map((componentId) =>
      call(RECORDS + "ListShipments", { componentId, pageSize: 1000 })));
    const shipments = pages.flatMap((page) => page.shipments || [])
      .sort((a, b) => (a.arrivesOn < b.arrivesOn ? -1 : a.arrivesOn > b.arrivesOn ? 1 : 0));
    list.replaceChildren(...shipments.map((s) => {
      const entry = document.createElement("li");
      entry.dataset.shipment = s.id;
      entry.textContent = `${units(s.units)} × ${s.componentId} arriving ${s.arrivesOn}`
        + (s.reference ? ` (${s.reference})` : "");
      return entry;
    }));
    if (!shipments.length) list.replaceWith("none");
  } catch (error) {
    say(error.message, true);
  }
}

function applyWatch(message) {
  if (message.snapshot) {
    lines.clear();
    (message.snapshot.lines || []).forEach((line) => lines.set(line.lineId, line));
    revisionShown(message.snapshot.revision);
  } else if (message.change) {
    for (const line of message.change.changed || []) {
      if (line.atRisk) lines.set(line.lineId, line);
      else lines.delete(line.lineId);
    }
    revisionShown(message.change.revision);
    refreshTables();
    refreshForecasts();
  } else {
    return;
  }
  renderLines();
  say("");
}

function revisionShown(revision) {
  $("revision").textContent = `(store revision ${revision})`;
}

// ---- Decisions ---------------------------------------------------------

async function refreshTables() {
  const q = question();
  try {
    const [impacts, stakes] = await Promise.all([
      call(RISK + "ListSupplierImpacts", { ...q, recoveryDays: 30, pageSize: 10 }),
      call(RISK + "ListLicenseStakes", { ...q, pageSize: 10 }),
    ]);
    const impactRows = $("impacts").tBodies[0];
    impactRows.replaceChildren();
    for (const i of impacts.impacts || []) {
      const row = impactRows.insertRow();
      cell(row, named(names.suppliers, i.supplierId));
      cell(row, i.country);
      cell(row, units(i.unitsLost), "number");
      cell(row, String(i.linesHit || 0), "number");
      cell(row, i.timeToSurviveDays === undefined ? "–" : String(i.timeToSurviveDays), "number");
      cell(row, i.critical ? "yes" : "no", "critical");
      cell(row, (i.riskExposureIndex || 0).toFixed(2), "number");
    }
    const stakeRows = $("stakes").tBodies[0];
    stakeRows.replaceChildren();
    for (const s of stakes.stakes || []) {
      const row = stakeRows.insertRow();
      cell(row, s.licenseId);
      cell(row, named(names.suppliers, s.supplierId));
      cell(row, (names.materials.get(s.material) || {}).name || s.material);
      cell(row, units(s.unitsAtStake), "number");
      cell(row, s.stopDateIfDenied || "–");
    }
  } catch (error) {
    say(error.message, true);
  }
}

// ---- The licence feed --------------------------------------------------

let lastSequence = null;

function applyFeed(message) {
  if (message.heartbeat && lastSequence === null) {
    lastSequence = Number(message.heartbeat.headSequence || 0);
  }
  const update = message.update;
  if (!update) return;
  lastSequence = Number(update.sequence);
  const licence = update.license || {};
  const item = document.createElement("li");
  item.dataset.licence = licence.id;
  const status = (licence.status || "").replace("LICENSE_STATUS_", "").toLowerCase();
  const was = (update.previousStatus || "").replace("LICENSE_STATUS_", "").toLowerCase();
  const what = update.kind === "CHANGE_KIND_DELETED" ? "deleted" : status;
  const strong = document.createElement("span");
  strong.className = "status";
  strong.textContent = what;
  const name = document.createElement("code");
  name.textContent = licence.id;
  item.append(
    `#${update.sequence} `, name, ` (${licence.supplierId} · ${licence.material}) `, strong,
    was && was !== "unspecified" && was !== status ? ` (was ${was})` : "",
    update.client ? `, by ${update.client}` : "",
  );
  $("feed").prepend(item);
  while ($("feed").children.length > 50) $("feed").lastChild.remove();
  $("feed-empty").hidden = true;
}

// ---- Wiring ------------------------------------------------------------

let watching = null;

function ask() {
  writeAddress();
  horizon = question().horizonDays;
  if (watching) watching.abort();
  watching = new AbortController();
  say("Asking…");
  const q = question();
  follow(RISK + "WatchAtRiskLines", () => ({ ...q, heartbeatSeconds: 15 }), applyWatch, watching.signal);
  refreshTables();
  refreshForecasts();
}

let feeding = null;

// How many of the log's latest licence changes the feed opens with.
const RECENT = 10;

// The log's head: the first heartbeat of a stream from now.
async function logHead() {
  const asked = new AbortController();
  let head = 0;
  try {
    await stream(RISK + "StreamLicenseUpdates", { fromNow: true, heartbeatSeconds: 1 }, (m) => {
      if (m.heartbeat) {
        head = Number(m.heartbeat.headSequence || 0);
        asked.abort();
      }
    }, asked.signal);
  } catch (error) {
    if (!asked.signal.aborted) throw error;
  }
  return head;
}

async function feed() {
  if (feeding) feeding.abort();
  feeding = new AbortController();
  if (lastSequence === null) {
    try {
      lastSequence = Math.max(0, (await logHead()) - RECENT);
    } catch (error) {
      say(error.message, true);
    }
  }
  follow(RISK + "StreamLicenseUpdates", () => (lastSequence === null
    ? { fromNow: true, heartbeatSeconds: 15 }
    : { afterSequence: String(lastSequence), heartbeatSeconds: 15 }), applyFeed, feeding.signal);
}

// ---- Signing in at the identity provider -------------------------------
// Authorization code with PKCE, as a public client: the verifier and state
// wait in this tab's sessionStorage during the round trip, and the access
// token is kept there too (only in this tab, gone when it closes).

const meta = (name) => (document.querySelector(`meta[name=${name}]`) || {}).content;
const provider = meta("lodestone-oidc-issuer") ? {
  issuer: meta("lodestone-oidc-issuer"),
  clientId: meta("lodestone-oidc-client-id"),
  scope: meta("lodestone-oidc-scope") || "openid",
  resource: meta("lodestone-oidc-resource"),
} : null;

const base64url = (bytes) => btoa(String.fromCharCode(...bytes))
  .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

function randomText() {
  const bytes = new Uint8Array(32);
  crypto.getRandomValues(bytes);
  return base64url(bytes);
}

async function providerMetadata() {
  const url = provider.issuer.replace(/\/$/, "") + "/.well-known/openid-configuration";
  const response = await fetch(url);
  if (!response.ok) throw new Error(`The identity provider does not answer (${response.status}).`);
  return response.json();
}

// Where the provider sends people back: this page, without its query.
const returnTo = () => location.origin + location.pathname;

async function signIn() {
  const metadata = await providerMetadata();
  const verifier = randomText();
  const state = randomText();
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  sessionStorage.setItem("lodestone-sign-in", JSON.stringify({ verifier, state, query: location.search }));
  const url = new URL(metadata.authorization_endpoint);
  const params = {
    response_type: "code",
    client_id: provider.clientId,
    redirect_uri: returnTo(),
    scope: provider.scope,
    state,
    code_challenge: base64url(new Uint8Array(digest)),
    code_challenge_method: "S256",
  };
  if (provider.resource) params.resource = provider.resource;
  url.search = new URLSearchParams(params);
  location.assign(url.href);
}

// Back from the provider: the code for a token, the address as it was.
async function finishSignIn() {
  const params = new URLSearchParams(location.search);
  if (!provider || (!params.has("code") && !params.has("error"))) return;
  const asked = JSON.parse(sessionStorage.getItem("lodestone-sign-in") || "null");
  sessionStorage.removeItem("lodestone-sign-in");
  history.replaceState(null, "", location.pathname + (asked ? asked.query : ""));
  if (params.has("error")) {
    throw new Error(`Sign-in refused: ${params.get("error_description") || params.get("error")}.`);
  }
  if (!asked || params.get("state") !== asked.state) {
    throw new Error("Sign-in failed: the provider's answer is not for this page's request.");
  }
  const metadata = await providerMetadata();
  const body = {
    grant_type: "authorization_code",
    code: params.get("code"),
    redirect_uri: returnTo(),
    client_id: provider.clientId,
    code_verifier: asked.verifier,
  };
  if (provider.resource) body.resource = provider.resource;
  const response = await fetch(metadata.token_endpoint, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams(body),
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok || !answer.access_token) {
    throw new Error(`Sign-in failed: ${answer.error_description || answer.error || response.status}.`);
  }
  sessionStorage.setItem("lodestone-token", answer.access_token);
}

// Who the token in this tab names, and its plants: read, not checked (the
// server checks every call).
function signedIn() {
  const token = sessionStorage.getItem("lodestone-token") || "";
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  try {
    const text = atob(parts[1].replace(/-/g, "+").replace(/_/g, "/"));
    return JSON.parse(new TextDecoder().decode(Uint8Array.from(text, (c) => c.charCodeAt(0))));
  } catch (_) {
    return null;
  }
}

function showAccount() {
  if (!provider) return;
  $("account").hidden = false;
  const claims = signedIn();
  $("sign-in").hidden = Boolean(claims);
  $("sign-out").hidden = !claims;
  const plants = claims && Array.isArray(claims.plants) ? `, plants ${claims.plants.join(", ")}` : "";
  $("who").textContent = claims ? `Signed in as ${claims.sub}${plants}` : "";
}

function setUpAccount() {
  if (!provider) return;
  $("sign-in").addEventListener("click", () => signIn().catch((error) => say(error.message, true)));
  $("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem("lodestone-token");
    location.reload();
  });
}

async function start() {
  try {
    await finishSignIn();
  } catch (error) {
    say(error.message, true);
  }
  showAccount();
  setUpAccount();
  $("token").value = sessionStorage.getItem("lodestone-token") || "";
  const chosen = readAddress();
  try {
    await loadNames();
    await loadLines(chosen);
  } catch (error) {
    say(error.message, true);
  }
  // Typing fires `input`, a choice from a list `change` (some fire
  // both): either asks again, once the controls are still.
  let pending = null;
  const changed = (event) => {
    if (event.target.id === "token") return;
    clearTimeout(pending);
    pending = setTimeout(ask, 250);
  };
  $("question").addEventListener("input", changed);
  $("question").addEventListener("change", changed);
  $("question").addEventListener("submit", (event) => event.preventDefault());
  $("token").addEventListener("change", async () => {
    sessionStorage.setItem("lodestone-token", $("token").value.trim());
    try {
      await loadNames();
      await loadLines({ plant: $("plant").value, idle: $("idle").value });
    } catch (error) {
      say(error.message, true);
    }
    ask();
    feed();
  });
  ask();
  feed();
}

// Leaving the page ends its streams at once: a browser keeps at most six
// connections to a server over HTTP/1.1, and streams left to linger after a
// reload would hold them.
window.addEventListener("pagehide", () => {
  if (watching) watching.abort();
  if (feeding) feeding.abort();
});

start();
