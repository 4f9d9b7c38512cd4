// The analyst's page: #/imports/ID/insights?as_of=&window=&min_score=&course=&by=&cell=
// Which course to open, for whom, where, through which channel: the
// opportunities with their reasons, the emerging cells, a selected cell's
// trend, the rates of a breakdown as a funnel plot, and the map. The filters
// and the selection live in the URL, so a view is shared as a link.
"use strict";

const CELL_KEYS = ["course", "town", "age_group", "channel"];
const BREAKDOWNS = ["town", "age_group", "channel", "gender", "course"];
const FILTERS = [
  ["as_of", "As of (a date)", "today"],
  ["window", "Window", "28d"],
  ["min_score", "Lowest score", "any"],
  ["course", "Course", "any"],
];

// The answer's body: the insights routes wrap theirs in `data`.
function dataOf(body) {
  return body && body.data && !Array.isArray(body.data) ? body.data : body;
}

function cellName(row) {
  return CELL_KEYS.map((k) => row[k]).join(" · ");
}

function cellId(row) {
  return CELL_KEYS.map((k) => row[k]).join("|");
}

// `?a=1&b=` with only the given values.
function queryOf(entries) {
  const query = new URLSearchParams();
  for (const [key, value] of entries) if (value !== undefined && value !== null && value !== "") query.set(key, value);
  return query.toString();
}

// A link to the API's own CSV, which the page fetches itself (with the
// tab's token, if any) and hands to the browser as a download.
function csvLink(path, label) {
  const link = el("a", { href: path, class: "csv", download: "" }, label || "Download CSV");
  link.addEventListener("click", async (event) => {
    event.preventDefault();
    const response = await read(path, true);
    if (!response.ok) {
      let body = null;
      try { body = await response.json(); } catch (_) { /* not JSON */ }
      setStatus(`download refused: ${response.status ? errorText(response, body) : "network error"}`, true);
      return;
    }
    const disposition = response.headers.get("content-disposition") || "";
    const named = disposition.match(/filename="([^"]+)"/);
    const url = URL.createObjectURL(await response.blob());
    const save = el("a", { href: url, download: named ? named[1] : "insikt.csv", hidden: true });
    document.body.append(save);
    save.click();
    save.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    setStatus(`downloaded ${named ? named[1] : "the CSV"}`);
  });
  return link;
}

function interval(row, low, high, format) {
  if (row[low] === null || row[low] === undefined) return "";
  return ` (${format(row[low])}–${format(row[high])})`;
}

const ratio = (v) => (v === null || v === undefined ? "—" : `${Number(v).toFixed(2)}×`);
const qValue = (q) => (q === null || q === undefined ? "—" : q < 0.001 ? "< 0.001" : Number(q).toFixed(3));

function insightsView(main, id, params) {
  const filters = Object.fromEntries(FILTERS.map(([name]) => [name, params.get(name) || ""]));
  const by = BREAKDOWNS.includes(params.get("by")) ? params.get("by") : "town";
  let selected = params.get("cell") || "";
  const base = `/imports/${id}/insights`;

  const form = el("form", { class: "controls", id: "insights-form" },
    FILTERS.map(([name, label, placeholder]) => el("label", { for: `f-${name}` }, label,
      el("input", { id: `f-${name}`, name, type: "text", value: filters[name], placeholder, inputmode: name === "min_score" ? "decimal" : null }))),
    el("button", { type: "submit" }, "Apply"),
    el("button", { type: "button", id: "copy-link", onclick: () => copyLink() }, "Copy link to this view"));
  const section = (heading, hid, ...body) => el("section", { "aria-labelledby": hid, class: "insight" }, el("h2", { id: hid }, heading), ...body);
  const opportunities = el("div", { class: "table-wrap", id: "opportunities" }, el("p", { class: "empty" }, "Loading…"));
  const trend = el("figure", { class: "chart", id: "trend" }, el("p", { class: "empty" }, "Choose a cell (a row of the opportunities or of the emerging list) to draw its weekly trend."));
  const emerging = el("div", { class: "table-wrap", id: "emerging" }, el("p", { class: "empty" }, "Loading…"));
  const funnelBy = el("select", { id: "funnel-by", onchange: (event) => setHash({ by: event.target.value }) },
    BREAKDOWNS.map((k) => el("option", { value: k, selected: k === by }, k.replace("_", " "))));
  const funnel = el("figure", { class: "chart", id: "funnel" }, el("p", { class: "empty" }, "Loading…"));
  const map = el("figure", { class: "chart", id: "map" }, el("p", { class: "empty" }, "Loading…"));

  main.replaceChildren(
    el("p", {}, el("a", { href: "#/" }, "← all jobs"), " · ", el("a", { href: `#/imports/${id}/demand?by=town,age_group` }, "demand chart")),
    el("h1", {}, `Insights of import ${id}`),
    el("p", { class: "hint" }, "Which course to open, for whom, where, and through which channel. Rates are shares of the residents; intervals are 95 %."),
    form,
    section("Opportunities", "opportunities-title", opportunities),
    el("div", { class: "pair" },
      section("Trend of the chosen cell", "trend-title", trend),
      section("Rates against population (funnel plot)", "funnel-title",
      el("p", { class: "hint" }, "For the Course filter, else for the best opportunity's course."),
      el("div", { class: "controls" }, el("label", { for: "funnel-by" }, "Breakdown", funnelBy)),
      el("p", { class: "hint" }, "Each dot is a group: its share of residents who ask against its size. The curves are the 95 % and 99.8 % binomial limits around the overall rate: a group outside them differs by more than chance; a small group far from the line may be luck."),
      funnel)),
    section("Emerging demand", "emerging-title", emerging),
    section("Map", "map-title", map),
  );

  // Changes the hash in place (no new history entry for a selection).
  function setHash(changes, replace) {
    const query = new URLSearchParams(params);
    for (const [key, value] of Object.entries(changes)) {
      if (value) query.set(key, value); else query.delete(key);
    }
    const hash = `#/imports/${id}/insights${query.toString() ? `?${query}` : ""}`;
    if (replace) history.replaceState(null, "", hash); else location.hash = hash;
  }

  function copyLink() {
    const link = location.href;
    if (navigator.clipboard) navigator.clipboard.writeText(link).then(() => setStatus("The link to this view is copied."), () => setStatus(link));
    else setStatus(link);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const changes = {};
    for (const [name] of FILTERS) changes[name] = $(`f-${name}`).value.trim();
    setHash(changes);
  });

  const common = [["as_of", filters.as_of], ["min_score", filters.min_score], ["course", filters.course]];
  const cellsByKey = new Map();

  async function select(row) {
    selected = cellId(row);
    params.set("cell", selected);
    setHash({ cell: selected }, true);
    for (const tr of main.querySelectorAll("tr[data-cell]")) tr.classList.toggle("selected", tr.getAttribute("data-cell") === selected);
    await drawTrend(row);
  }

  async function drawTrend(row) {
    const query = queryOf([["by", "town,age_group,channel"], ["course", row.course], ["interval", "week"],
      ["min_score", filters.min_score], ["to", filters.as_of], ["limit", "1000"]]);
    const path = `${base}/trend?${query}`;
    trend.replaceChildren(el("p", { class: "empty" }, `Drawing ${cellName(row)}…`));
    const result = await read(path);
    if (!result.ok) { trend.replaceChildren(el("p", { class: "status error" }, `trend: ${result.message}`)); return; }
    const answer = dataOf(result.body);
    const series = answer.series.find((s) => s.town === row.town && s.age_group === row.age_group && s.channel === row.channel);
    if (!series) {
      trend.replaceChildren(el("p", { class: "empty" }, `${cellName(row)}: no statements in the range, or the group is too small to show.`));
      return;
    }
    const caption = `Weekly trend of ${row.course} in ${row.town}, ${row.age_group}, ${row.channel}`;
    trend.replaceChildren(
      trendChart(answer.buckets, [
        { name: "askers", values: series.askers, cls: "askers" },
        { name: "statements", values: series.statements, cls: "statements" },
      ], caption),
      el("figcaption", {}, `${caption}: ${series.askers[series.askers.length - 1].toLocaleString()} askers in the last week, ${series.statements.reduce((a, b) => a + b, 0).toLocaleString()} statements over ${answer.buckets.length} weeks. `,
        csvLink(`${path}&format=csv`, "Download the trend as CSV")));
  }

  // A table of cells, each row selectable (click or Enter) to draw its trend.
  function cellTable(tableId, headers, rows, cells) {
    const numeric = new Set(headers.filter(([, , num]) => num).map(([h]) => h));
    return el("table", { class: "cards", id: tableId },
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, ""), headers.map(([h]) => el("th", { scope: "col", class: numeric.has(h) ? "num" : null }, h)))),
      el("tbody", {}, rows.map((row) => {
        const tr = el("tr", { "data-cell": cellId(row), class: cellId(row) === selected ? "selected" : null, onclick: (event) => { if (!event.target.closest("a, button")) select(row); } },
          el("td", { "data-label": "" }, el("button", { type: "button", class: "trend-button", "aria-label": `Draw the trend of ${cellName(row)}`, onclick: () => select(row) }, "Trend")),
          cells(row).map((content, i) => el("td", { "data-label": headers[i][0], class: headers[i][2] ? "num" : headers[i][1] }, content)));
        return tr;
      })));
  }

  async function loadOpportunities() {
    const path = `${base}/opportunities?${queryOf([["window", filters.window], ...common])}`;
    const result = await read(path);
    if (!result.ok) { opportunities.replaceChildren(el("p", { class: "status error" }, `opportunities: ${result.message}`)); return null; }
    const answer = dataOf(result.body);
    const rows = answer.rows || [];
    for (const row of rows) cellsByKey.set(cellId(row), row);
    if (!rows.length) {
      opportunities.replaceChildren(el("p", { class: "empty" }, `No cell stands out among ${formatNumber(answer.cells)} considered.`), csvLink(`${path}&format=csv`));
      return null;
    }
    opportunities.replaceChildren(
      el("p", { class: "first-why", id: "first-why" }, rows[0].why),
      // The facts are in each sentence (and every figure in the CSV).
      cellTable("opportunities-table", [["#", null, true], ["Course", "course"], ["Town", null], ["Age", null], ["Channel", null],
        ["Score", null, true], ["Why", "why"]], rows, (r) => [
        String(r.rank),
        el("span", {}, r.course, r.new_course ? el("span", { class: "badge" }, "new") : null),
        r.town, r.age_group, r.channel,
        r.score === null || r.score === undefined ? "—" : Number(r.score).toFixed(2),
        r.why,
      ]),
      el("p", {}, `${formatNumber(answer.cells)} cells considered (at least ${formatNumber(answer.min_population)} residents), ${formatNumber(answer.suppressed ?? result.body.suppressed)} too small to show. `,
        csvLink(`${path}&format=csv`)));
    return rows[0];
  }

  async function loadEmerging() {
    const path = `${base}/emerging?${queryOf([["by", "course,town,age_group,channel"], ["window", filters.window], ...common, ["limit", "20"]])}`;
    const result = await read(path);
    if (!result.ok) { emerging.replaceChildren(el("p", { class: "status error" }, `emerging: ${result.message}`)); return; }
    const answer = dataOf(result.body);
    const rows = answer.rows || [];
    for (const row of rows) if (!cellsByKey.has(cellId(row))) cellsByKey.set(cellId(row), row);
    const summary = el("p", {}, `Askers in the ${answer.window} to ${formatTime(answer.as_of)}: ${formatNumber(answer.T1)}, in the ${answer.window} before: ${formatNumber(answer.T0)}; ${formatNumber(answer.tested)} of ${formatNumber(answer.groups)} cells tested. `,
      csvLink(`${path}&format=csv`));
    if (!rows.length) { emerging.replaceChildren(el("p", { class: "empty" }, "No cell has enough askers in the window to test."), summary); return; }
    emerging.replaceChildren(cellTable("emerging-table", [["Course", "course"], ["Town", null], ["Age", null], ["Channel", null],
      ["Now", null, true], ["Before", null, true], ["Share ratio", null, true], ["q", null, true]], rows, (r) => [
      el("span", {}, r.course, r.new_course ? el("span", { class: "badge" }, "new") : null),
      r.town, r.age_group, r.channel, formatNumber(r.current), formatNumber(r.previous),
      r.new ? "new" : `${ratio(r.ratio)}${interval(r, "ratio_low", "ratio_high", ratio)}`, qValue(r.q),
    ]), summary);
  }

  // The rates of one course: the filter's, else the best opportunity's
  // (across all courses nearly every resident of a sample asks something).
  async function loadFunnel(course) {
    const path = `${base}/rates?${queryOf([["by", by], ["as_of", filters.as_of], ["min_score", filters.min_score], ["course", course], ["limit", "10000"]])}`;
    const result = await read(path);
    if (!result.ok) { funnel.replaceChildren(el("p", { class: "status error" }, `rates: ${result.message}`)); return; }
    const answer = dataOf(result.body);
    const points = answer.rows.filter((r) => r.population > 0 && r.rate !== null)
      .map((r) => ({ ...r, name: r[by] }));
    const overall = answer.totals.rate;
    if (!points.length || overall === null) { funnel.replaceChildren(el("p", { class: "empty" }, "No group to plot."), csvLink(`${path}&format=csv`)); return; }
    const caption = `Share of residents who ask${course ? ` for ${course}` : ""}, by ${by.replace("_", " ")}, against the group's size (overall ${percent(overall)})`;
    funnel.replaceChildren(funnelPlot(points, overall, caption),
      el("figcaption", {}, `${caption}; ${points.length} groups. `, csvLink(`${path}&format=csv`, "Download the rates as CSV")));
  }

  let mapUrl = null;
  async function loadMap() {
    const path = `${base}/map.svg?${queryOf(common.filter(([k]) => k !== "as_of"))}`;
    const response = await read(path, true);
    if (!response.ok) { map.replaceChildren(el("p", { class: "status error" }, `map: ${response.status || "network error"}`)); return; }
    if (mapUrl) URL.revokeObjectURL(mapUrl);
    mapUrl = URL.createObjectURL(await response.blob());
    map.replaceChildren(el("img", { src: mapUrl, alt: `Map of the import's towns: circle area by askers, colour by the age-adjusted ratio${filters.course ? ` for ${filters.course}` : ""}` }),
      el("figcaption", {}, "Towns at their airports' places; the legend is under the map. ", el("a", { href: path }, "The map as SVG"), "."));
  }

  current.refresh = async () => {
    const [top] = await Promise.all([loadOpportunities(), loadEmerging(), loadMap()]);
    await loadFunnel(filters.course || (top && top.course) || "");
    // The shared cell, else the best opportunity: its trend is drawn.
    if (!selected) return;
    const chosen = cellsByKey.get(selected);
    if (chosen) await select(chosen);
    else {
      const [course, town, age_group, channel] = selected.split("|");
      await select({ course, town, age_group, channel });
    }
  };
  current.noTimer = true;
}

// #/insights: the newest import's page (the header's link).
async function newestInsights(main) {
  main.replaceChildren(el("h1", {}, "Insights"), el("p", { class: "empty", id: "newest" }, "Finding the newest import…"));
  const result = await read("/jobs");
  if (!result.ok) { setStatus(`jobs: ${result.message}`, true); return; }
  const imports = result.body.data.map((job) => job.import);
  if (!imports.length) { $("newest").textContent = "No imports yet: the demo (insikt demo) or POST /imports makes one."; return; }
  location.replace(`#/imports/${Math.max(...imports)}/insights`);
}
