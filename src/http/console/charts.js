// The analyst's charts, drawn in the page as inline SVG (no library, nothing
// fetched): a trend of one cell and a funnel plot of rates. Each has a
// legend, a <title> tooltip on every mark, and labels where they fit; every
// value goes in as text, never as markup.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

function svgEl(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null) continue;
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) if (child) node.append(child);
  return node;
}

// A mark's tooltip (and its name for screen readers).
function tip(text) {
  return svgEl("title", { text });
}

// About `count` round ticks from 0 (or `min`) to at least `max`.
function niceTicks(max, count, min) {
  const low = min || 0;
  const span = Math.max(max - low, 1e-9);
  const raw = span / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw);
  const ticks = [];
  for (let t = Math.floor(low / step) * step; t <= max + step * 1e-9; t += step) ticks.push(Number(t.toPrecision(12)));
  if (ticks[ticks.length - 1] < max) ticks.push(Number((ticks[ticks.length - 1] + step).toPrecision(12)));
  return ticks;
}

function percent(rate, digits) {
  return rate === null || rate === undefined ? "—" : `${(rate * 100).toFixed(digits === undefined ? 1 : digits)} %`;
}

function legendItem(x, y, mark, text) {
  return svgEl("g", { class: "legend-item" }, mark(x, y), svgEl("text", { x: x + 22, y: y + 4, class: "legend", text }));
}

// --- trend: statements and askers per bucket ---------------------------------

// `buckets`: ISO dates; `series`: [{name, values, cls}] drawn as lines.
function trendChart(buckets, series, caption) {
  const width = 760; const height = 300;
  const left = 56; const right = width - 16; const top = 44; const bottom = height - 52;
  const max = Math.max(1, ...series.flatMap((s) => s.values));
  const ticks = niceTicks(max, 4);
  const top_value = ticks[ticks.length - 1];
  const x = (i) => left + (buckets.length === 1 ? (right - left) / 2 : (right - left) * i / (buckets.length - 1));
  const y = (v) => bottom - (bottom - top) * v / top_value;
  const svg = svgEl("svg", { viewBox: `0 0 ${width} ${height}`, class: "trend", role: "img", "aria-label": caption });
  svg.append(tip(caption));
  for (const t of ticks) {
    svg.append(svgEl("line", { x1: left, x2: right, y1: y(t), y2: y(t), class: "grid" }));
    svg.append(svgEl("text", { x: left - 6, y: y(t) + 4, class: "tick", "text-anchor": "end", text: t.toLocaleString() }));
  }
  // At most ~8 date labels, always the first and last.
  const every = Math.max(1, Math.ceil(buckets.length / 8));
  buckets.forEach((b, i) => {
    const last = buckets.length - 1;
    // Every `every`-th, and the last (but not a regular one crowding it).
    if (i !== last && (i % every || last - i < every)) return;
    const anchor = buckets.length > 1 && i === 0 ? "start" : i === buckets.length - 1 && i > 0 ? "end" : "middle";
    svg.append(svgEl("text", { x: x(i), y: bottom + 18, class: "tick", "text-anchor": anchor, text: b.slice(0, 10) }));
  });
  svg.append(svgEl("line", { x1: left, x2: right, y1: bottom, y2: bottom, class: "axis" }));
  for (const s of series) {
    svg.append(svgEl("polyline", { points: s.values.map((v, i) => `${x(i)},${y(v)}`).join(" "), class: `line ${s.cls}` }));
    s.values.forEach((v, i) => svg.append(svgEl("circle", { cx: x(i), cy: y(v), r: 3.5, class: `point ${s.cls}` },
      tip(`week of ${buckets[i].slice(0, 10)}: ${v.toLocaleString()} ${s.name}`))));
    // The last value, labelled: where the cell stands now.
    const last = s.values.length - 1;
    if (last >= 0) svg.append(svgEl("text", { x: x(last) - 6, y: y(s.values[last]) - 8, class: `value ${s.cls}`, "text-anchor": "end", text: s.values[last].toLocaleString() }));
  }
  let lx = left;
  for (const s of series) {
    svg.append(legendItem(lx, 18, (x0, y0) => svgEl("line", { x1: x0, x2: x0 + 16, y1: y0, y2: y0, class: `line ${s.cls}` }), `${s.name} per week`));
    lx += 180;
  }
  svg.append(svgEl("text", { x: lx, y: 22, class: "legend muted", text: "hover a point for its value" }));
  return svg;
}

// --- funnel plot: rate against population ------------------------------------

// The binomial control limits around the overall rate `p` for a group of
// `n`: p ± z·sqrt(p(1−p)/n), clipped to [0, 1].
function funnelLimits(p, n, z) {
  const half = z * Math.sqrt(p * (1 - p) / n);
  return [Math.max(0, p - half), Math.min(1, p + half)];
}

const Z95 = 1.96;
const Z998 = 3.09;

// Where a group falls: "high3"/"low3" outside the 99.8 % limits,
// "high2"/"low2" outside the 95 % ones, "inside" otherwise.
function funnelClass(p, n, rate) {
  const [low3, high3] = funnelLimits(p, n, Z998);
  const [low2, high2] = funnelLimits(p, n, Z95);
  if (rate > high3) return "high3";
  if (rate < low3) return "low3";
  if (rate > high2) return "high2";
  if (rate < low2) return "low2";
  return "inside";
}

// `points`: [{name, population, askers, rate, rate_low, rate_high}];
// `overall`: the whole import's rate.
function funnelPlot(points, overall, caption) {
  const width = 760; const height = 380;
  const left = 60; const right = width - 20; const top = 64; const bottom = height - 46;
  const populations = points.map((d) => d.population);
  const nMin = Math.max(1, Math.min(...populations));
  const nMax = Math.max(nMin + 1, ...populations);
  // A log scale when populations span more than 20×, so small groups are not piled on the axis.
  const log = nMax / nMin > 20;
  const x = log
    ? (n) => left + (right - left) * Math.log(n / nMin) / Math.log(nMax / nMin)
    : (n) => left + (right - left) * (n - 0) / nMax;
  const rateMax = Math.min(1, Math.max(...points.map((d) => d.rate), funnelLimits(overall, nMin, Z998)[1]) * 1.08 || 0.01);
  const ticks = niceTicks(rateMax, 5);
  const yMax = ticks[ticks.length - 1];
  const y = (r) => bottom - (bottom - top) * r / yMax;
  const svg = svgEl("svg", { viewBox: `0 0 ${width} ${height}`, class: "funnel", role: "img", "aria-label": caption });
  svg.append(tip(caption));
  for (const t of ticks) {
    svg.append(svgEl("line", { x1: left, x2: right, y1: y(t), y2: y(t), class: "grid" }));
    svg.append(svgEl("text", { x: left - 6, y: y(t) + 4, class: "tick", "text-anchor": "end", text: percent(t, 0) }));
  }
  const xTicks = log
    ? [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000, 200000, 500000, 1e6].filter((n) => n >= nMin && n <= nMax)
    : niceTicks(nMax, 6).filter((n) => n <= nMax);
  for (const n of xTicks) {
    svg.append(svgEl("text", { x: x(n), y: bottom + 18, class: "tick", "text-anchor": "middle", text: n.toLocaleString() }));
  }
  svg.append(svgEl("text", { x: (left + right) / 2, y: height - 6, class: "axis-name", "text-anchor": "middle", text: `residents in the group${log ? " (log scale)" : ""}` }));
  svg.append(svgEl("text", { x: 14, y: (top + bottom) / 2, class: "axis-name", "text-anchor": "middle", transform: `rotate(-90 14 ${(top + bottom) / 2})`, text: "share who ask" }));
  svg.append(svgEl("line", { x1: left, x2: right, y1: bottom, y2: bottom, class: "axis" }));
  // The limits as curves sampled along the population axis.
  const samples = [];
  for (let i = 0; i <= 80; i++) {
    const n = log ? nMin * (nMax / nMin) ** (i / 80) : Math.max(nMin, nMax * i / 80);
    samples.push(n);
  }
  const curve = (z, side) => samples.map((n) => `${x(n).toFixed(1)},${y(Math.min(yMax, funnelLimits(overall, n, z)[side])).toFixed(1)}`).join(" ");
  for (const [z, cls] of [[Z95, "limit95"], [Z998, "limit998"]]) {
    for (const side of [0, 1]) svg.append(svgEl("polyline", { points: curve(z, side), class: `limit ${cls}` }));
  }
  svg.append(svgEl("line", { x1: left, x2: right, y1: y(overall), y2: y(overall), class: "overall" }, tip(`overall: ${percent(overall)}`)));
  // Outliers are named on the plot where a name fits without covering
  // another; every dot has its tooltip.
  const placed = [];
  const fits = (box) => box[0] >= 0 && box[2] <= width && !placed.some((b) => box[0] < b[2] && b[0] < box[2] && box[1] < b[3] && b[1] < box[3]);
  for (const d of points) {
    const cls = funnelClass(overall, d.population, d.rate);
    svg.append(svgEl("circle", { cx: x(d.population), cy: y(d.rate), r: 4.5, class: `dot ${cls}` },
      tip(`${d.name}: ${d.askers.toLocaleString()} of ${d.population.toLocaleString()} ask, ${percent(d.rate)} (95 % ${percent(d.rate_low)}–${percent(d.rate_high)})`)));
    if (cls !== "inside") {
      const text = `${d.name} ${percent(d.rate, 0)}`;
      const w = text.length * 6.6;
      const cx = x(d.population); const cy = y(d.rate) - 6;
      // Right of the dot, else left of it.
      const box = [[cx + 7, cy - 11, cx + 7 + w, cy + 2, "start", cx + 7], [cx - 7 - w, cy - 11, cx - 7, cy + 2, "end", cx - 7]].find(fits);
      if (box) {
        placed.push(box);
        svg.append(svgEl("text", { x: box[5], y: cy, class: `value ${cls}`, "text-anchor": box[4], text }));
      }
    }
  }
  const row1 = 18; const row2 = 40;
  svg.append(legendItem(left, row1, (x0, y0) => svgEl("line", { x1: x0, x2: x0 + 16, y1: y0, y2: y0, class: "overall" }), `overall rate ${percent(overall)}`));
  svg.append(legendItem(left + 190, row1, (x0, y0) => svgEl("line", { x1: x0, x2: x0 + 16, y1: y0, y2: y0, class: "limit limit95" }), "95 % limits"));
  svg.append(legendItem(left + 310, row1, (x0, y0) => svgEl("line", { x1: x0, x2: x0 + 16, y1: y0, y2: y0, class: "limit limit998" }), "99.8 % limits"));
  svg.append(legendItem(left, row2, (x0, y0) => svgEl("circle", { cx: x0 + 8, cy: y0, r: 4.5, class: "dot high3" }), "above 99.8 %"));
  svg.append(legendItem(left + 130, row2, (x0, y0) => svgEl("circle", { cx: x0 + 8, cy: y0, r: 4.5, class: "dot high2" }), "above 95 %"));
  svg.append(legendItem(left + 250, row2, (x0, y0) => svgEl("circle", { cx: x0 + 8, cy: y0, r: 4.5, class: "dot inside" }), "within"));
  svg.append(legendItem(left + 340, row2, (x0, y0) => svgEl("circle", { cx: x0 + 8, cy: y0, r: 4.5, class: "dot low2" }), "below 95 %"));
  svg.append(legendItem(left + 460, row2, (x0, y0) => svgEl("circle", { cx: x0 + 8, cy: y0, r: 4.5, class: "dot low3" }), "below 99.8 %"));
  return svg;
}
