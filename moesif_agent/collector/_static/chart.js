// Traffic over time (GET /api/timeseries): calls per interval stacked by status class, with
// the p50 and p95 latency as lines on a second axis. Drawn as SVG by the page itself; every
// label is a text node, and each interval's figures are in its <title> (shown on hover).

import { h, replace, svg } from "./dom.js";
import { formatCount, formatMs, formatTime, plural } from "./format.js";
import { SummaryView } from "./summary.js";

// The chart takes the height the view leaves it, within these bounds.
const MIN_HEIGHT = 220;
const MAX_HEIGHT = 640;
const MARGIN = { top: 26, right: 70, bottom: 30, left: 56 };
const MAX_BAR = 48;
// Bottom to top; "other" is 1xx and calls without a response.
export const CLASSES = ["2xx", "3xx", "4xx", "5xx", "other"];
const LINES = [
  ["p50_ms", "p50 latency"],
  ["p95_ms", "p95 latency"],
];

/** A round number at or above `value` (1, 2 or 5 times a power of ten). */
function niceCeiling(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 5, 10].map((m) => m * power).find((v) => v >= value);
}

/** An axis from 0 to `max` in `intervals` round steps (each at least `least`), so every
 * gridline has a round label; without `intervals`, as many as fit four-ish. */
function scale(max, least, intervals = null) {
  const step = Math.max(least, niceCeiling(max / (intervals ?? 4)));
  const count = intervals ?? Math.max(1, Math.ceil(max / step));
  return { top: step * count, ticks: Array.from({ length: count + 1 }, (_, i) => i * step) };
}

function intervalText(seconds) {
  if (seconds % 86400 === 0) return `${seconds / 86400} d`;
  if (seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds % 60 === 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}

/** A tick label: the time of day, with seconds for short intervals and the date for long. */
function tickText(iso, seconds) {
  const text = formatTime(iso); // "2024-02-06 10:05:00.000"
  if (seconds >= 86400) return text.slice(0, 10);
  return seconds < 60 ? text.slice(11, 19) : text.slice(11, 16);
}

export class TrafficView extends SummaryView {
  constructor(shared, onzoom) {
    super("traffic", shared);
    this.onzoom = onzoom;
    this.totals = h("p", { class: "chart-totals", "aria-live": "polite" });
    this.canvas = h("div", { class: "chart" });
    // The totals name the status classes in their colours; the legend adds the lines.
    this.legend = h(
      "ul",
      { class: "legend" },
      LINES.map(([key, label]) => h("li", { class: `key line ${key}` }, label)),
    );
    replace(this.body, h("div", { class: "chart-head" }, this.totals, this.legend), this.canvas);
    // Redraw to the new width (the chart's text must not stretch with it).
    this.resize = new ResizeObserver(() => {
      const size = `${this.canvas.clientWidth}x${this.canvas.clientHeight}`;
      if (this.data && size !== this.drawnSize) this.draw(this.data);
    });
    this.resize.observe(this.canvas);
  }

  request() {
    return ["api/timeseries", {}];
  }

  render(data) {
    const counts = CLASSES.map((c) => [c, data.buckets.reduce((n, b) => n + b[c], 0)]);
    replace(
      this.totals,
      h("strong", { class: "chart-total" }, plural(data.calls, "call")),
      counts
        .filter(([, n]) => n)
        .map(([c, n]) => h("span", { class: `chip-count k${c}` }, `${c} ${formatCount(n)}`)),
      data.interval_seconds
        ? h("span", { class: "muted" }, `per ${intervalText(data.interval_seconds)}`)
        : null,
    );
    this.draw(data);
    this.setStatus(
      data.buckets.length
        ? `${plural(data.events, "event")} from ${formatTime(data.start)} to ` +
            `${formatTime(data.end)}. Click a bar to list its events.`
        : this.shared.active
          ? "No calls match these filters."
          : "No calls yet.",
    );
  }

  draw(data) {
    this.drawnSize = `${this.canvas.clientWidth}x${this.canvas.clientHeight}`;
    if (!data.buckets.length) {
      replace(this.canvas);
      return;
    }
    const width = Math.max(this.canvas.clientWidth, 320);
    const height = Math.min(Math.max(this.canvas.clientHeight, MIN_HEIGHT), MAX_HEIGHT);
    const chart = drawChart(data, width, height);
    chart.addEventListener("click", (event) => {
      const group = event.target.closest("g.bucket");
      if (!group) return;
      const start = Date.parse(data.buckets[Number(group.dataset.index)].start);
      const end = new Date(start + data.interval_seconds * 1000).toISOString();
      // time__gt is exclusive: a millisecond earlier keeps the interval's first call.
      this.onzoom(new Date(start - 1).toISOString(), end);
    });
    replace(this.canvas, chart);
  }
}

/** The positions of everything: x of a bucket, y of a call count and of a latency. */
function geometry(data, width, height) {
  const { buckets } = data;
  const plotW = width - MARGIN.left - MARGIN.right;
  const plotH = height - MARGIN.top - MARGIN.bottom;
  const calls = scale(Math.max(...buckets.map((b) => b.calls)), 1);
  // The latency axis shares the gridlines of the calls axis.
  const ms = scale(Math.max(...buckets.map((b) => b.p95_ms ?? 0)), 0, calls.ticks.length - 1);
  const step = plotW / buckets.length;
  const bottom = MARGIN.top + plotH;
  return {
    data,
    width,
    height,
    plotW,
    plotH,
    calls,
    ms,
    step,
    x: (index) => MARGIN.left + index * step,
    y: (count) => bottom - (count / calls.top) * plotH,
    yMs: (value) => bottom - (Math.max(value, 0) / ms.top) * plotH,
  };
}

function gridlines(g) {
  const right = g.width - MARGIN.right;
  return [
    g.calls.ticks.map((value) =>
      svg(
        "g",
        { class: "grid" },
        svg("line", { x1: MARGIN.left, x2: right, y1: g.y(value), y2: g.y(value) }),
        svg(
          "text",
          { x: MARGIN.left - 6, y: g.y(value) + 4, class: "axis calls" },
          formatCount(value),
        ),
      ),
    ),
    g.ms.ticks.map((value) =>
      svg(
        "text",
        { x: right + 6, y: g.yMs(value) + 4, class: "axis ms" },
        `${formatCount(value)} ms`,
      ),
    ),
    svg("text", { class: "axis-title", x: MARGIN.left - 6, y: 12 }, "calls"),
    svg("text", { class: "axis-title ms", x: right + 6, y: 12 }, "latency"),
  ];
}

function bucketTitle(bucket) {
  const parts = CLASSES.filter((c) => bucket[c]).map((c) => `${c} ${formatCount(bucket[c])}`);
  let title = `${formatTime(bucket.start)}: ${plural(bucket.calls, "call")}`;
  if (parts.length) title += ` (${parts.join(", ")})`;
  if (bucket.p50_ms !== null) {
    title += `; p50 ${formatMs(bucket.p50_ms)}, p95 ${formatMs(bucket.p95_ms)}`;
  }
  return title;
}

function bars(g) {
  const gap = g.step > 6 ? 1 : 0;
  // A few intervals make wide slots: the bars stay bars, centred in them.
  const barWidth = Math.min(Math.max(g.step - 2 * gap, 0.5), MAX_BAR);
  const inset = (g.step - barWidth) / 2;
  return g.data.buckets.map((bucket, index) => {
    let top = g.y(0);
    const stack = CLASSES.filter((c) => bucket[c]).map((c) => {
      const height = g.y(0) - g.y(bucket[c]);
      top -= height;
      const x = g.x(index) + inset;
      return svg("rect", { class: `bar k${c}`, x, y: top, width: barWidth, height });
    });
    // The whole column is the hover and click target, however short its bar.
    const hit = svg("rect", {
      class: "hit",
      x: g.x(index),
      y: MARGIN.top,
      width: g.step,
      height: g.plotH,
    });
    const title = svg("title", {}, bucketTitle(bucket));
    return svg("g", { class: "bucket", "data-index": index }, title, hit, stack);
  });
}

function latencyLines(g) {
  return LINES.map(([key]) => {
    // A gap in the line where an interval had no timed call.
    const runs = [[]];
    g.data.buckets.forEach((bucket, index) => {
      if (bucket[key] === null) runs.push([]);
      else runs.at(-1).push([g.x(index) + g.step / 2, g.yMs(bucket[key])]);
    });
    return runs
      .filter((run) => run.length)
      .map((run) =>
        run.length === 1
          ? svg("circle", { class: `line ${key}`, cx: run[0][0], cy: run[0][1], r: 2.5 })
          : svg("polyline", { class: `line ${key}`, points: run.map((p) => p.join()).join(" ") }),
      );
  });
}

function timeTicks(g) {
  const { buckets, interval_seconds: seconds } = g.data;
  const every = Math.max(1, Math.ceil(buckets.length / Math.max(2, Math.floor(g.plotW / 90))));
  return buckets
    .map((bucket, index) => [bucket, index])
    .filter(([, index]) => index % every === 0)
    .map(([bucket, index]) =>
      svg(
        "text",
        { class: "axis time", x: g.x(index) + g.step / 2, y: g.height - 10 },
        tickText(bucket.start, seconds),
      ),
    );
}

function drawChart(data, width, height) {
  const g = geometry(data, width, height);
  return svg(
    "svg",
    {
      width,
      height,
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-label": "Calls over time",
    },
    gridlines(g),
    bars(g),
    latencyLines(g),
    timeTicks(g),
  );
}
