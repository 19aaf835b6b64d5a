// Progress charts with uPlot (vendored in /app/vendor/uplot, MIT): one chart per measure, the
// instrument's score bands shaded behind the line, the reliable-change line dashed, and the
// plan's milestones, checkpoints and reviews as marks on the time line. Every chart has the
// same facts in words and in a table beside it, for people who do not see the chart.
import uPlot from "../vendor/uplot/uPlot.esm.js";
import { h, when } from "./dom.js";

const BAND_FILLS = ["#e8f3ea", "#f6f2dc", "#f8e6d5", "#f6dcdc", "#efd3e6"];
const LINE = "#0b5cad";
const CHANGE = "#17632c";
const EVENT = "#5a6b82";

const seconds = (iso) => Date.parse(iso.length === 10 ? `${iso}T12:00:00Z` : iso) / 1000;

// The reliable-change line: the score that counts as a real change from the first one.
export function changeLine(measure) {
  const rc = measure.reliable_change;
  if (!rc || rc.threshold == null || measure.baseline == null) return null;
  return measure.direction === "lower_is_better" ? measure.baseline - rc.threshold : measure.baseline + rc.threshold;
}

export function timelineMarks(goals) {
  const marks = [];
  for (const goal of goals || []) {
    for (const m of goal.milestones || []) {
      const day = m.reached_on || m.provisional_date;
      if (day) marks.push({ at: seconds(day), kind: "milestone", text: m.description, reached: !!m.reached_on });
    }
    for (const c of goal.checkpoints || []) {
      if (c.provisional_date) marks.push({ at: seconds(c.provisional_date), kind: "checkpoint", text: c.purpose || "" });
    }
  }
  return marks;
}

export function reviewMarks(progressGoals) {
  const marks = [];
  for (const goal of progressGoals || []) {
    for (const r of goal.reviews || []) {
      if (!r.in_error) marks.push({ at: seconds(r.occurred_at), kind: "review", text: r.outcome });
    }
  }
  return marks;
}

function drawBackground(definition, line, marks) {
  return (u) => {
    const { ctx, bbox } = u;
    ctx.save();
    for (const [i, band] of (definition?.bands || []).entries()) {
      const top = u.valToPos(Math.min(band.max + 0.5, u.scales.y.max), "y", true);
      const bottom = u.valToPos(Math.max(band.min - 0.5, u.scales.y.min), "y", true);
      ctx.fillStyle = BAND_FILLS[i % BAND_FILLS.length];
      ctx.fillRect(bbox.left, top, bbox.width, bottom - top);
    }
    if (line !== null) {
      const y = u.valToPos(line, "y", true);
      ctx.strokeStyle = CHANGE;
      ctx.lineWidth = 2 * devicePixelRatio;
      ctx.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
      ctx.beginPath(); ctx.moveTo(bbox.left, y); ctx.lineTo(bbox.left + bbox.width, y); ctx.stroke();
    }
    ctx.setLineDash([]);
    for (const mark of marks) {
      if (mark.at < u.scales.x.min || mark.at > u.scales.x.max) continue;
      const x = u.valToPos(mark.at, "x", true);
      ctx.strokeStyle = EVENT;
      ctx.lineWidth = (mark.kind === "review" ? 3 : 1.5) * devicePixelRatio;
      ctx.beginPath(); ctx.moveTo(x, bbox.top); ctx.lineTo(x, bbox.top + bbox.height); ctx.stroke();
    }
    ctx.restore();
  };
}

// A chart's words: what the latest score is, where it started, and whether that is a real change.
export function describe(measure, definition, { forClient }) {
  const better = measure.direction === "lower_is_better" ? "Lower is better." : "Higher is better.";
  const parts = [];
  const last = measure.points.at(-1);
  if (last) parts.push(`Latest: ${fmt(last.scores.total)} on ${when(last.observed_at)}.`);
  if (measure.baseline != null && measure.points.length > 1) parts.push(`At the start: ${fmt(measure.baseline)}.`);
  parts.push(better);
  const status = measure.reliable_change?.status;
  if (status === "improved") parts.push(forClient ? "That is a clear change for the better." : "Reliable improvement.");
  else if (status === "deteriorated") parts.push(forClient ? "That is a clear change for the worse; talk it over with your clinician." : "Reliable deterioration.");
  else if (status && !forClient) parts.push(`Reliable change: ${status.replaceAll("_", " ")}.`);
  if (!forClient && measure.band) parts.push(`Band: ${measure.band}.`);
  return parts.join(" ");
}

const fmt = (v) => (v == null ? "–" : Number.isInteger(v) ? String(v) : v.toFixed(1));

export function measureChart(measure, definition, marks, { forClient }) {
  const title = definition ? definition.title : measure.instrument_id;
  const line = changeLine(measure);
  const holder = h("div", { className: "chart", "aria-hidden": "true" });
  const legend = h("ul", { className: "chart-legend" });
  legend.replaceChildren(
    ...(definition?.bands?.length
      ? [h("li", {}, forClient ? "Shaded areas: score ranges, lightest = fewest difficulties"
        : definition.bands.map((b, i) => h("span", {}, h("span", { className: `swatch band-${i % 5}` }), ` ${b.label} (${b.min}–${b.max}) `)))]
      : []),
    ...(line !== null ? [h("li", {}, h("span", { className: "swatch line-change" }),
      forClient ? " Dashed line: past it counts as a clear change" : ` Reliable change line (${fmt(line)}; ${measure.reliable_change.source || ""})`)] : []),
    ...(marks.length ? [h("li", {}, h("span", { className: "swatch line-event" }),
      forClient ? " Upright lines: milestones, check-ins and reviews" : " Vertical lines: milestones, checkpoints, reviews (thick)")] : []),
  );
  const rows = measure.points.map((p) => h("tr", {},
    h("td", {}, when(p.observed_at)), h("td", { className: "score" }, fmt(p.scores.total)),
    forClient ? null : h("td", {}, p.band || ""), forClient ? null : h("td", {}, p.reported_by?.informant || "")));
  const table = h("div", { className: "table-scroll", tabindex: 0, role: "region", "aria-label": `${title}: every score` }, h("table", {},
    h("caption", { className: "visually-hidden" }, `${title}: every score`),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Date"), h("th", { scope: "col" }, "Score"),
      forClient ? null : h("th", { scope: "col" }, "Band"), forClient ? null : h("th", { scope: "col" }, "Reported by"))),
    h("tbody", {}, rows)));
  const markList = marks.length ? h("ul", { className: "muted" }, marks.map((m) =>
    h("li", {}, `${when(new Date(m.at * 1000).toISOString())}: ${m.kind}${m.text ? ` – ${m.text}` : ""}`))) : null;
  const section = h("section", { className: "card measure", "data-instrument": measure.instrument_id,
    "aria-labelledby": `chart-${measure.instrument_id}` },
    h("h3", { id: `chart-${measure.instrument_id}` }, title),
    h("p", { className: "summary", "data-latest": measure.points.at(-1)?.scores.total ?? "" },
      describe(measure, definition, { forClient })),
    measure.plain_words?.text ? h("p", { className: "plain-words" }, measure.plain_words.text) : null,
    !forClient && measure.plain_words?.criteria?.length
      ? h("details", {}, h("summary", {}, "Criteria behind the words"),
        h("ul", {}, measure.plain_words.criteria.map((c) => h("li", {}, c)))) : null,
    holder, legend,
    h("details", {}, h("summary", {}, "See all the numbers"), table, markList));
  requestAnimationFrame(() => draw(holder, measure, definition, line, marks));
  return section;
}

function draw(holder, measure, definition, line, marks) {
  if (!holder.isConnected) return;
  const xs = measure.points.map((p) => seconds(p.observed_at));
  const ys = measure.points.map((p) => p.scores.total);
  const range = definition?.score_range;
  const width = Math.max(280, holder.clientWidth);
  const opts = {
    width, height: 240, legend: { show: false }, cursor: { show: false },
    scales: { x: { time: true }, y: { range: range ? [range.min, range.max] : undefined } },
    axes: [{ stroke: "#4a5360" }, { stroke: "#4a5360" }],
    series: [{}, { stroke: LINE, width: 2, points: { show: true, size: 7, fill: LINE } }],
    hooks: { drawClear: [drawBackground(definition, line, marks)] },
  };
  new uPlot(opts, [xs, ys], holder);
}
