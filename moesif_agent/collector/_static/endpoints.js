// Endpoints: one row per method and route template (GET /api/endpoints), with calls, error
// rates and latency percentiles; a click lists that endpoint's events.

import { h, replace } from "./dom.js";
import { cellText, formatCount, formatMs, formatRate, formatWhen, plural } from "./format.js";
import { SortableTable, SummaryView } from "./summary.js";

const COLUMNS = [
  {
    key: "endpoint",
    label: "Endpoint",
    class: "col-endpoint",
    descending: false,
    value: (e) => [
      h("span", { class: "verb" }, cellText(e.verb)),
      " ",
      h("span", { class: "route" }, cellText(e.route)),
    ],
    title: (e) => `${e.verb} ${e.route}`,
    sort: (e) => `${e.route} ${e.verb}`,
  },
  { key: "calls", label: "Calls", class: "col-num", value: (e) => formatCount(e.calls) },
  {
    key: "error_rate_4xx",
    label: "4xx",
    class: "col-num col-rate",
    value: (e) => formatRate(e.error_rate_4xx),
    title: (e) => `${formatCount(e.errors_4xx)} of ${formatCount(e.calls)} calls`,
  },
  {
    key: "error_rate_5xx",
    label: "5xx",
    class: "col-num col-rate",
    value: (e) => formatRate(e.error_rate_5xx),
    title: (e) => `${formatCount(e.errors_5xx)} of ${formatCount(e.calls)} calls`,
  },
  { key: "p50_ms", label: "p50", class: "col-num", value: (e) => formatMs(e.p50_ms) },
  { key: "p95_ms", label: "p95", class: "col-num", value: (e) => formatMs(e.p95_ms) },
  { key: "p99_ms", label: "p99", class: "col-num", value: (e) => formatMs(e.p99_ms) },
  {
    key: "last_seen",
    label: "Last seen",
    class: "col-time",
    value: (e) => formatWhen(e.last_seen),
    title: (e) => e.last_seen,
  },
].map((c) => ({
  value: (e) => cellText(e[c.key]),
  title: (e) => cellText(e[c.key]),
  sort: (e) => e[c.key],
  ...c,
}));

// An error rate worth noticing, shown in the error colour.
const NOTABLE = 0.01;

export class EndpointsView extends SummaryView {
  constructor(shared, onopen) {
    super("endpoints", shared);
    this.table = new SortableTable(
      "list-endpoints",
      COLUMNS.map((c) =>
        c.key.startsWith("error_rate")
          ? {
              ...c,
              value: (e) =>
                h("span", { class: e[c.key] >= NOTABLE ? `rate r${c.label}` : "rate" }, c.value(e)),
            }
          : c,
      ),
      { key: "calls", descending: true },
      (endpoint) => onopen(endpoint),
    );
    replace(this.body, this.table.element);
  }

  request() {
    return ["api/endpoints", {}];
  }

  render(data) {
    this.table.setItems(data.items);
    const count = data.items.length;
    if (!count) {
      this.setStatus(
        this.shared.active
          ? "No calls match these filters."
          : "No calls yet. Point an agent at this collector and send your app some requests.",
      );
      return;
    }
    this.setStatus(
      `${plural(count, "endpoint")}, ${plural(data.calls, "call")}` +
        " (weighted by sampling). Click one to see its events.",
    );
  }
}
