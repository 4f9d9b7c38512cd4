// The insikt console: reads and drives the JSON API. No framework; every
// value from the API goes into the page as text (never as HTML).
"use strict";

// Tokens stay in this tab's sessionStorage: the admin token (job control)
// and, for a service that needs one to read, a token for reading.
const TOKEN_KEY = "insikt.adminToken";
const READ_TOKEN_KEY = "insikt.token";
const REFRESH_MS = 5000;
const DEAD_LETTER_PAGE = 20;
const RSS_POINTS = 120;
const STATES = ["pending", "running", "stopped", "expired", "failed"];
const DEMAND_KEYS = ["town", "age_group", "channel", "course"];

const $ = (id) => document.getElementById(id);

// --- small DOM helpers -------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function formatTime(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return isNaN(date) ? iso : date.toLocaleString();
}

function formatNumber(n) {
  return n === null || n === undefined ? "—" : Number(n).toLocaleString();
}

function formatBytes(n) {
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function stateBadge(state) {
  return el("span", { class: `state state-${STATES.includes(state) ? state : "unknown"}`, text: state });
}

function setStatus(text, isError) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", Boolean(isError));
}

// --- the API -----------------------------------------------------------------

async function api(method, path, token) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, { method, headers });
  } catch (error) {
    return { ok: false, status: 0, body: null, message: `network error: ${error.message}` };
  }
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  return { ok: response.ok, status: response.status, body, message: errorText(response, body) };
}

// A read: sent with the token the tab holds (the admin token reads too);
// when the service answers that it needs one (401), or refuses the one
// held (403), the page asks for a token, keeps it, and tries once more.
async function read(path, asRaw) {
  const send = async (token) => {
    if (!asRaw) return api("GET", path, token);
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    try { return await fetch(path, { headers }); } catch (error) { return { ok: false, status: 0, error }; }
  };
  let answer = await send(readToken());
  if (answer.status === 401 || answer.status === 403) {
    forgetReadToken();
    const token = await askToken(
      answer.status === 401
        ? "This service needs a token to read its data. Enter a token with the read scope (or a higher one)."
        : "The token this tab holds may not read this. Enter a token with the read scope (or a higher one).",
      "Token");
    if (token) {
      sessionStorage.setItem(READ_TOKEN_KEY, token);
      showForget();
      answer = await send(token);
    }
  }
  return answer;
}

// The error envelope as one line: message, then the fields it names.
function errorText(response, body) {
  const error = body && body.error;
  if (!error) return `${response.status} ${response.statusText}`;
  let text = `${response.status}: ${error.message}`;
  if (error.fields) {
    const fields = Object.entries(error.fields).map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`);
    if (fields.length) text += ` (${fields.join("; ")})`;
  }
  return text;
}

// --- the tokens --------------------------------------------------------------

function storedToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

function readToken() {
  return sessionStorage.getItem(READ_TOKEN_KEY) || storedToken();
}

function forgetReadToken() {
  sessionStorage.removeItem(READ_TOKEN_KEY);
  // An admin token that cannot read is no admin token either.
  sessionStorage.removeItem(TOKEN_KEY);
  showForget();
}

function showForget() {
  $("forget-token").hidden = !storedToken() && !sessionStorage.getItem(READ_TOKEN_KEY);
}

// Only one question at a time: reads that run together share the answer.
let asking = null;

// Asks for a token in a modal dialog; resolves to it, or null if cancelled.
function askToken(reason, title) {
  if (asking) return asking;
  const dialog = $("token-dialog");
  const input = $("token-input");
  $("token-title").textContent = title || "Admin token";
  $("token-reason").textContent = reason;
  input.value = "";
  asking = new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      const token = dialog.returnValue === "ok" ? input.value.trim() : "";
      input.value = "";
      asking = null;
      resolve(token || null);
    }, { once: true });
    dialog.returnValue = "";
    dialog.showModal();
    input.focus();
  });
  return asking;
}

async function jobAction(name, verb) {
  let token = storedToken();
  if (!token) {
    token = await askToken(`To ${verb} job ${name}, enter the admin token.`);
    if (!token) { setStatus(`${verb} ${name}: cancelled`); return; }
    sessionStorage.setItem(TOKEN_KEY, token);
    showForget();
  }
  setStatus(`${verb} ${name}…`);
  const result = await api("POST", `/jobs/${encodeURIComponent(name)}/${verb}`, token);
  if (result.status === 401 || result.status === 403) {
    // A refused token is not kept: the next click asks again.
    sessionStorage.removeItem(TOKEN_KEY);
    showForget();
  }
  if (result.ok) {
    const job = result.body.data;
    setStatus(`${verb} ${name}: ${result.status} OK, the job is ${job.state}`);
  } else {
    setStatus(`${verb} ${name} refused: ${result.message}`, true);
  }
  await refreshView();
}

function actionButtons(job) {
  const buttons = [];
  if (job.state !== "expired" && job.desired !== "stopped") {
    buttons.push(el("button", {
      type: "button", class: "stop", "data-key": `stop:${job.name}`,
      "aria-label": `Stop job ${job.name}`, onclick: () => jobAction(job.name, "stop"),
    }, "Stop"));
  }
  if (job.state === "stopped" || job.state === "failed" || (job.state !== "expired" && job.desired === "stopped")) {
    buttons.push(el("button", {
      type: "button", class: "start", "data-key": `start:${job.name}`,
      "aria-label": `Start job ${job.name}`, onclick: () => jobAction(job.name, "start"),
    }, "Start"));
  }
  return buttons;
}

// --- views -------------------------------------------------------------------

// The current view: its refresh function, called on a timer and after actions.
let current = { refresh: async () => {} };
let timer = null;

function autoRefresh() {
  return sessionStorage.getItem("insikt.autoRefresh") !== "off";
}

function refreshControls() {
  const box = el("input", {
    type: "checkbox", id: "auto-refresh", checked: autoRefresh(),
    onchange: (event) => sessionStorage.setItem("insikt.autoRefresh", event.target.checked ? "on" : "off"),
  });
  return [
    el("label", { class: "inline", for: "auto-refresh" }, box, `Refresh every ${REFRESH_MS / 1000} s`),
    el("button", { type: "button", id: "refresh-now", onclick: () => refreshView() }, "Refresh now"),
  ];
}

// Replaces `container`'s content, keeping keyboard focus on the same control.
function replaceKeepingFocus(container, ...nodes) {
  const focused = document.activeElement && document.activeElement.getAttribute("data-key");
  container.replaceChildren(...nodes);
  if (focused) {
    const again = container.querySelector(`[data-key="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
}

async function refreshView() {
  try { await current.refresh(); } catch (error) { setStatus(`refresh failed: ${error.message}`, true); }
}

function jobsView(main, params) {
  const filter = params.get("state") || "";
  const select = el("select", {
    id: "state-filter",
    onchange: (event) => {
      location.hash = event.target.value ? `#/?state=${event.target.value}` : "#/";
    },
  }, el("option", { value: "" }, "all states"), STATES.map((s) => el("option", { value: s, selected: s === filter }, s)));
  const list = el("div", { class: "table-wrap", id: "jobs" }, el("p", { class: "empty" }, "Loading…"));
  main.replaceChildren(
    el("h1", {}, "Jobs"),
    el("div", { class: "controls" }, el("label", { for: "state-filter" }, "State", select), refreshControls()),
    list,
  );
  const headers = ["Name", "Import", "State", "Owner", "Lag", "Stored", "Dead letters", "Expires", "Actions"];
  current.refresh = async () => {
    const result = await read(filter ? `/jobs?state=${encodeURIComponent(filter)}` : "/jobs");
    if (!result.ok) { setStatus(`jobs: ${result.message}`, true); return; }
    const jobs = result.body.data;
    if (!jobs.length) {
      replaceKeepingFocus(list, el("p", { class: "empty" }, filter ? `No ${filter} jobs.` : "No jobs yet."));
      return;
    }
    const cell = (label, content, cls) => el("td", { "data-label": label, class: cls }, content);
    const rows = jobs.map((job) => el("tr", { "data-job": job.name },
      cell("Name", el("a", { href: `#/jobs/${encodeURIComponent(job.name)}` }, job.name)),
      cell("Import", el("span", {}, el("a", { href: `#/imports/${job.import}/demand`, title: `Demand of import ${job.import}` }, String(job.import)),
        " ", el("a", { href: `#/imports/${job.import}/insights`, class: "insights-link", "aria-label": `Insights of import ${job.import}` }, "insights")), "num"),
      cell("State", stateBadge(job.state), "job-state"),
      cell("Owner", job.owner || "—"),
      cell("Lag", formatNumber(job.lag), "num"),
      cell("Stored", formatNumber(job.statements_stored), "num"),
      cell("Dead letters", formatNumber(job.dead_letters), "num"),
      cell("Expires", formatTime(job.expires_at)),
      cell("Actions", el("span", {}, actionButtons(job))),
    ));
    replaceKeepingFocus(list, el("table", { class: "cards" },
      el("caption", { class: "empty" }, `${jobs.length} job(s), as of ${new Date().toLocaleTimeString()}`),
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col", class: ["Import", "Lag", "Stored", "Dead letters"].includes(h) ? "num" : null }, h)))),
      el("tbody", {}, rows)));
  };
}

function jobView(main, name) {
  const facts = el("div", { id: "job-facts" }, el("p", { class: "empty" }, "Loading…"));
  const letters = el("div", { class: "table-wrap", id: "dead-letters" });
  const archives = el("div", { class: "table-wrap", id: "archives" });
  // Dead-letter pages: the `after` of each page seen, so Previous can go back.
  const pages = [0];
  const pager = el("div", { class: "controls" });
  main.replaceChildren(
    el("p", {}, el("a", { href: "#/" }, "← all jobs")),
    el("h1", {}, `Job ${name}`),
    el("div", { class: "controls" }, refreshControls()),
    facts,
    el("h2", { id: "dead-letters-title" }, "Dead letters"),
    letters, pager,
    el("h2", {}, "Archives"),
    archives,
  );
  let importId = null;

  async function loadLetters() {
    if (importId === null) return;
    const after = pages[pages.length - 1];
    const result = await read(`/imports/${importId}/dead-letters?after=${after}&limit=${DEAD_LETTER_PAGE}`);
    if (!result.ok) { setStatus(`dead letters: ${result.message}`, true); return; }
    const rows = result.body.data;
    const cell = (label, content, cls) => el("td", { "data-label": label, class: cls }, content);
    replaceKeepingFocus(letters, rows.length
      ? el("table", { class: "cards", "aria-labelledby": "dead-letters-title" },
        el("thead", {}, el("tr", {}, ["Id", "Partition", "Offset", "Reason", "Payload", "At"].map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, rows.map((d) => el("tr", {},
          cell("Id", String(d.id), "num"), cell("Partition", String(d.partition), "num"),
          cell("Offset", String(d.offset), "num"), cell("Reason", d.reason),
          cell("Payload", el("code", {}, d.payload.length > 300 ? `${d.payload.slice(0, 300)}…` : d.payload)),
          cell("At", formatTime(d.created_at))))))
      : el("p", { class: "empty" }, after ? "No more dead letters." : "No dead letters."));
    pager.replaceChildren(
      el("button", { type: "button", "data-key": "dl-first", disabled: pages.length === 1, onclick: () => { pages.length = 1; loadLetters(); } }, "First page"),
      el("button", { type: "button", "data-key": "dl-prev", disabled: pages.length === 1, onclick: () => { pages.pop(); loadLetters(); } }, "Previous page"),
      el("button", {
        type: "button", "data-key": "dl-next", disabled: rows.length < DEAD_LETTER_PAGE,
        onclick: () => { pages.push(rows[rows.length - 1].id); loadLetters(); },
      }, "Next page"),
      el("span", { class: "empty" }, `page ${pages.length}`),
    );
  }

  current.refresh = async () => {
    const result = await read(`/jobs/${encodeURIComponent(name)}`);
    if (!result.ok) { setStatus(`job ${name}: ${result.message}`, true); facts.replaceChildren(el("p", { class: "empty" }, result.message)); return; }
    const job = result.body.data;
    importId = job.import;
    const fact = (term, value) => [el("dt", {}, term), el("dd", {}, value)];
    replaceKeepingFocus(facts,
      el("dl", { class: "facts" },
        fact("State", el("span", { "data-job": job.name }, el("span", { class: "job-state" }, stateBadge(job.state)))),
        fact("Asked for", job.desired),
        fact("Import", el("span", {}, el("a", { href: `#/imports/${job.import}/demand` }, `${job.import} (demand chart)`),
          " · ", el("a", { href: `#/imports/${job.import}/insights` }, "insights"))),
        fact("Topic", job.topic),
        fact("Owner", job.owner || "—"),
        fact("Committed offset", formatNumber(job.committed_offset)),
        fact("High watermark", formatNumber(job.high_watermark)),
        fact("Lag", formatNumber(job.lag)),
        fact("Statements stored", formatNumber(job.statements_stored)),
        fact("Dead letters", formatNumber(job.dead_letters)),
        fact("Created", formatTime(job.created_at)),
        fact("Started", formatTime(job.started_at)),
        fact("Expires", formatTime(job.expires_at)),
        fact("Last error", job.last_error || "—"),
      ),
      el("div", { class: "controls" }, actionButtons(job)));
    const files = await read(`/jobs/${encodeURIComponent(name)}/archives`);
    if (files.ok) {
      const rows = files.body.data;
      const cell = (label, content, cls) => el("td", { "data-label": label, class: cls }, content);
      archives.replaceChildren(rows.length
        ? el("table", { class: "cards" },
          el("thead", {}, el("tr", {}, ["Partition", "From offset", "To offset", "Records", "Size", "Object"].map((h) => el("th", { scope: "col" }, h)))),
          el("tbody", {}, rows.map((a) => el("tr", {},
            cell("Partition", String(a.partition), "num"), cell("From offset", String(a.from_offset), "num"),
            cell("To offset", String(a.to_offset), "num"), cell("Records", formatNumber(a.count), "num"),
            cell("Size", `${formatNumber(a.bytes)} B`, "num"), cell("Object", el("code", {}, a.object))))))
        : el("p", { class: "empty" }, "No archives: a job archives what it had not consumed when it expires."));
    }
    await loadLetters();
  };
}

function demandView(main, id, params) {
  const by = (params.get("by") || "town").split(",");
  const keySelect = (selectId, selected, allowNone) => el("select", { id: selectId, name: selectId },
    allowNone ? el("option", { value: "" }, "nothing") : null,
    DEMAND_KEYS.map((k) => el("option", { value: k, selected: k === selected }, k.replace("_", " "))));
  const text = (inputId, value, placeholder) => el("input", { id: inputId, name: inputId, type: "text", value: value || "", placeholder });
  const form = el("form", { class: "controls", id: "demand-form" },
    el("label", { for: "by-first" }, "Group by", keySelect("by-first", by[0], false)),
    el("label", { for: "by-second" }, "then by", keySelect("by-second", by[1] || "", true)),
    el("label", { for: "age-bins" }, "Age bins", text("age-bins", params.get("age_bins"), "18,25,35,45,55,65")),
    el("label", { for: "course" }, "Course", text("course", params.get("course"), "any")),
    el("label", { for: "channel" }, "Channel", text("channel", params.get("channel"), "any")),
    el("button", { type: "submit" }, "Draw"),
  );
  const chart = el("figure", { class: "chart", id: "demand-chart" }, el("p", { class: "empty" }, "Loading…"));
  const links = el("p", {});
  main.replaceChildren(
    el("p", {}, el("a", { href: "#/" }, "← all jobs"), " · ", el("a", { href: `#/imports/${id}/insights` }, "insights")),
    el("h1", {}, `Demand of import ${id}`),
    form, chart, links,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const query = new URLSearchParams();
    const keys = [$("by-first").value, $("by-second").value].filter(Boolean);
    query.set("by", keys.join(","));
    for (const [param, inputId] of [["age_bins", "age-bins"], ["course", "course"], ["channel", "channel"]]) {
      const value = $(inputId).value.trim();
      if (value) query.set(param, value);
    }
    location.hash = `#/imports/${id}/demand?${query}`;
  });
  let url = null;
  current.refresh = async () => {
    const query = new URLSearchParams(params);
    if (!query.get("by")) query.set("by", "town");
    const svg = `/imports/${id}/demand.svg?${query}`;
    const response = await read(svg, true);
    if (response.status === 0) {
      chart.replaceChildren(el("p", { class: "status error" }, `The chart could not be drawn: network error`));
      return;
    }
    if (!response.ok) {
      let body = null;
      try { body = await response.json(); } catch (_) { /* not JSON */ }
      chart.replaceChildren(el("p", { class: "status error" }, `The chart could not be drawn: ${errorText(response, body)}`));
      return;
    }
    // A blob URL in an <img>: the SVG is shown without running anything in it.
    if (url) URL.revokeObjectURL(url);
    url = URL.createObjectURL(await response.blob());
    const keys = query.get("by").split(",").map((k) => k.replace("_", " "));
    const left = Number(response.headers.get("insikt-suppressed") || 0);
    chart.replaceChildren(
      el("img", { src: url, alt: `Bar chart: demand of import ${id} by ${keys.join(" and ")}` }),
      el("figcaption", {}, `Statements and residents by ${keys.join(" and ")}` +
        (left ? ` (${left} groups too small to show are left out)` : "")));
    links.replaceChildren("The same as ", el("a", { href: svg }, "SVG"), " or ",
      el("a", { href: `/imports/${id}/demand?${query}` }, "JSON"), ".");
  };
  current.noTimer = true;
}

// --- routing: #/, #/?state=S, #/jobs/NAME, #/imports/ID/demand?by=…,
// #/imports/ID/insights?… (insights.js), #/insights (the newest import's) ---

function route() {
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query] = hash.split("?");
  const params = new URLSearchParams(query || "");
  const main = $("main");
  current = { refresh: async () => {} };
  let match;
  if ((match = path.match(/^\/jobs\/(.+)$/))) {
    jobView(main, decodeURIComponent(match[1]));
    document.title = `Job ${decodeURIComponent(match[1])} — insikt console`;
  } else if ((match = path.match(/^\/imports\/(\d+)\/demand$/))) {
    demandView(main, match[1], params);
    document.title = `Demand of import ${match[1]} — insikt console`;
  } else if ((match = path.match(/^\/imports\/(\d+)\/insights$/))) {
    insightsView(main, match[1], params);
    document.title = `Insights of import ${match[1]} — insikt console`;
  } else if (path === "/insights") {
    newestInsights(main);
    document.title = "Insights — insikt console";
  } else {
    jobsView(main, params);
    document.title = "Jobs — insikt console";
  }
  refreshView();
}

// --- resident memory, from /metrics -------------------------------------------

const rss = [];

async function sampleMemory() {
  let text;
  try {
    const response = await fetch("/metrics");
    if (!response.ok) return;
    text = await response.text();
  } catch (_) { return; }
  const match = text.match(/^insikt_process_resident_memory_bytes (\S+)$/m);
  if (!match) return;
  const bytes = Number(match[1]);
  rss.push(bytes);
  if (rss.length > RSS_POINTS) rss.shift();
  const max = Math.max(...rss);
  const min = Math.min(...rss);
  const span = max - min || 1;
  const step = 120 / (RSS_POINTS - 1);
  const offset = 120 - step * (rss.length - 1);
  const points = rss.map((v, i) =>
    `${(offset + i * step).toFixed(1)},${(28 - ((v - min) / span) * 26).toFixed(1)}`);
  // One reading is one point, which a polyline does not draw: a flat line.
  if (points.length === 1) points.unshift(`0,${points[0].split(",")[1]}`);
  $("rss-line").setAttribute("points", points.join(" "));
  $("rss-value").textContent = `${formatBytes(bytes)} (range ${formatBytes(min)}–${formatBytes(max)} over ${rss.length} reading(s))`;
}

// --- start -------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("forget-token").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(READ_TOKEN_KEY);
    showForget();
    setStatus("The tokens are forgotten.");
  });
  showForget();
  window.addEventListener("hashchange", () => { route(); $("main").focus(); });
  route();
  sampleMemory();
  timer = setInterval(() => {
    sampleMemory();
    if (autoRefresh() && !current.noTimer) refreshView();
  }, REFRESH_MS);
});
