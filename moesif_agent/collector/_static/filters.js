// The filter bar the dashboard views share (endpoints, traffic, events, people): search, a
// time range and the read API's event filters. Each view asks it for the API parameters, so
// the chart, the endpoint table and the event list always describe the same events.

import { h } from "./dom.js";

export const TYPING_DELAY_MS = 400;
export const VERBS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

// Relative ranges are recomputed at each refresh, so "last hour" keeps moving.
const RANGES = [
  ["", "All time"],
  ["15m", "Last 15 minutes"],
  ["1h", "Last hour"],
  ["6h", "Last 6 hours"],
  ["24h", "Last 24 hours"],
  ["7d", "Last 7 days"],
  ["custom", "Custom range"],
];
const RANGE_MS = { m: 60_000, h: 3_600_000, d: 86_400_000 };

const text = (name, label, placeholder = "", extra = {}) => ({
  name,
  label,
  type: "text",
  placeholder,
  ...extra,
});
const choice = (name, label, options) => ({ name, label, type: "select", options });

// Named as the API's query parameters (and kept under these names in the location hash).
const MAIN = [
  text("q", "Search", "URI, header or body text", { wide: true }),
  choice("range", "Time range", RANGES),
  text("verb", "Method", "any", { list: "verbs" }),
  text("status", "Status", "200 or 5xx"),
  text("route", "Route", "/items/{id}", { wide: true }),
  text("user_id", "User"),
  text("company_id", "Company"),
];
const MORE = [
  text("path", "Path regex", "^/items"),
  choice("direction", "Direction", [
    ["", "any"],
    ["Incoming", "incoming"],
    ["Outgoing", "outgoing"],
  ]),
  choice("blocked", "Blocked", [
    ["", "any"],
    ["true", "blocked"],
    ["false", "not blocked"],
  ]),
  text("transaction_id", "Transaction"),
];
const CUSTOM = [
  { name: "time__gt", label: "From", type: "datetime" },
  { name: "time__lt", label: "To", type: "datetime" },
];
const FIELDS = [...MAIN, ...MORE, ...CUSTOM];
export const FILTER_NAMES = FIELDS.map((f) => f.name);

// <input type="datetime-local"> speaks local time without a zone; the API wants ISO 8601.
function localInputToISO(value) {
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? "" : date.toISOString();
}

function isoToLocalInput(value) {
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return "";
  const local = new Date(date.getTime() - date.getTimezoneOffset() * 60000);
  return local.toISOString().slice(0, 19);
}

/** A labelled input for filter `f`: selects and date-times apply at once, typing after a
 * pause. */
export function filterField(f, apply, applySoon) {
  let input;
  if (f.type === "select") {
    input = h(
      "select",
      { name: f.name, onchange: apply },
      f.options.map(([value, label]) => h("option", { value }, label)),
    );
  } else if (f.type === "datetime") {
    input = h("input", { type: "datetime-local", step: 1, name: f.name, onchange: apply });
  } else {
    input = h("input", {
      type: "search",
      name: f.name,
      placeholder: f.placeholder || "",
      list: f.list,
      autocomplete: "off",
      spellcheck: "false",
      oninput: applySoon,
    });
  }
  const classes = `filter filter-${f.type}${f.wide ? " filter-wide" : ""}`;
  return h("label", { class: classes }, h("span", {}, f.label), input);
}

/** The non-empty values of `fields` in `form`, date-times as ISO 8601. */
export function readForm(form, fields) {
  const values = {};
  for (const f of fields) {
    let value = form.elements[f.name].value.trim();
    if (f.type === "datetime" && value) value = localInputToISO(value);
    if (value) values[f.name] = value;
  }
  return values;
}

export function writeForm(form, fields, values) {
  for (const f of fields) {
    const value = values[f.name] ?? "";
    form.elements[f.name].value = f.type === "datetime" && value ? isoToLocalInput(value) : value;
  }
}

/** A form of filters named as the read API's parameters: `values` holds the non-empty ones;
 * `onchange` hears of each change the reader makes (typing, after a pause). */
export class FilterForm {
  constructor(fields, label, { reload = null } = {}) {
    this.fields = fields;
    this.values = {};
    this.onchange = null;
    this.form = h(
      "form",
      {
        class: "filters",
        "aria-label": label,
        onsubmit: (e) => {
          e.preventDefault();
          this.apply();
        },
      },
      this.build(),
      h(
        "div",
        { class: "filter-buttons" },
        fields.length ? h("button", { type: "submit" }, "Apply") : null,
        fields.length
          ? h("button", { type: "button", onclick: () => this.clear() }, "Clear")
          : null,
        reload ? h("button", { type: "button", onclick: reload }, "Reload") : null,
      ),
    );
    this.element = this.form;
  }

  field(f) {
    return filterField(
      f,
      () => this.apply(),
      () => this.applySoon(),
    );
  }

  build() {
    return this.fields.map((f) => this.field(f));
  }

  read() {
    return readForm(this.form, this.fields);
  }

  /** Shows `values` (from the hash, or set by a click elsewhere) without announcing them. */
  write(values) {
    writeForm(this.form, this.fields, values);
    this.values = this.read();
  }

  // While typing, wait for a pause: a half-typed status or regex would only earn a 400.
  applySoon() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.apply(), TYPING_DELAY_MS);
  }

  apply() {
    clearTimeout(this.timer);
    const values = this.read();
    if (JSON.stringify(values) === JSON.stringify(this.values)) return;
    this.values = values;
    this.onchange?.();
  }

  clear() {
    this.form.reset();
    this.apply();
  }

  /** The read API parameters for the current values. */
  params() {
    return { ...this.values };
  }

  get active() {
    return Object.keys(this.values).length > 0;
  }
}

/** The dashboard's filter bar: the main filters, more behind a fold, and a time range that
 * is relative (recomputed at each refresh, so "last hour" keeps moving) or custom. */
export class FilterBar extends FilterForm {
  constructor() {
    super(FIELDS, "Filters");
    this.form.classList.add("shared-filters");
  }

  build() {
    const field = (f) => this.field(f);
    this.custom = h("div", { class: "filter-custom", hidden: true }, CUSTOM.map(field));
    this.more = h(
      "details",
      { class: "filter-more" },
      h("summary", {}, "More filters"),
      h("div", { class: "filter-more-fields" }, MORE.map(field)),
    );
    const verbs = h(
      "datalist",
      { id: "verbs" },
      VERBS.map((verb) => h("option", { value: verb })),
    );
    return [MAIN.map(field), this.custom, this.more, verbs];
  }

  read() {
    const values = super.read();
    this.custom.hidden = values.range !== "custom";
    if (values.range !== "custom") {
      delete values.time__gt;
      delete values.time__lt;
    }
    return values;
  }

  write(values) {
    const range = (values.time__gt || values.time__lt) && !values.range ? "custom" : values.range;
    super.write({ ...values, range });
    this.more.open = MORE.some((f) => values[f.name]);
  }

  params() {
    const { range, ...params } = this.values;
    const m = /^(\d+)([mhd])$/.exec(range || "");
    if (m) params.time__gt = new Date(Date.now() - m[1] * RANGE_MS[m[2]]).toISOString();
    return params;
  }
}
