// Building blocks of the tables and detail panes: sections, key/value tables, headers,
// bodies and table columns. Every value goes in as text (see dom.js).

import { h } from "./dom.js";
import { cellText, describeBody, formatWhen, prettyJSON } from "./format.js";

export function section(title, ...content) {
  return h("section", { class: "detail-section" }, h("h3", {}, title), ...content);
}

/** A two-column table of the entries whose value is present. */
export function keyValues(entries, className = "kv") {
  const rows = entries
    .filter(([, value]) => value !== undefined && value !== null && value !== "")
    .map(([key, value]) =>
      h("tr", {}, h("th", { scope: "row" }, key), h("td", {}, cellText(value))),
    );
  return rows.length ? h("table", { class: className }, h("tbody", {}, rows)) : null;
}

export function headersView(headers) {
  if (!headers || typeof headers !== "object" || !Object.keys(headers).length) {
    return h("p", { class: "muted" }, "no headers");
  }
  return keyValues(Object.entries(headers), "kv headers");
}

/** What the agent said about a body it cut or left out (metadata._moesif.request_body...). */
function bodyNote(note) {
  if (!note || typeof note !== "object") return null;
  const size = typeof note.size === "number" ? ` (${note.size} bytes)` : "";
  if (note.truncated) {
    const text = `truncated by the agent: ${note.captured} of ${note.size} bytes captured`;
    return h("p", { class: "warning" }, text);
  }
  if (note.omitted) {
    return h("p", { class: "body-omitted" }, `not captured by the agent: ${note.omitted}${size}`);
  }
  return null;
}

export function bodyView(part, note) {
  const body = describeBody(part);
  if (body.kind === "none") return bodyNote(note) || h("p", { class: "muted" }, "no body");
  const label = h("p", { class: `body-label body-${body.kind}` }, body.label);
  if (body.kind === "binary") {
    return [
      label,
      bodyNote(note),
      h("details", {}, h("summary", {}, "hex preview"), h("pre", { class: "code" }, body.text)),
    ];
  }
  return [label, bodyNote(note), h("pre", { class: "code body" }, body.text)];
}

export function jsonSection(title, value) {
  if (value === undefined || value === null) return null;
  return section(title, h("pre", { class: "code" }, prettyJSON(value)));
}

export function rawSection(item) {
  return h(
    "details",
    { class: "detail-section raw" },
    h("summary", {}, "Raw JSON, as stored"),
    h("pre", { class: "code" }, prettyJSON(item)),
  );
}

/** A table column; `value` returns text or nodes, `title` the tooltip (the full value). */
export const column = (label, className, value, title = undefined) => ({
  label,
  class: className,
  value,
  title,
});
/** A column of an identifier (user, company...): often long, so cut, with a tooltip. */
export const idColumn = (label, get, className = "col-id") => {
  const show = (item) => cellText(get(item));
  return column(label, className, show, show);
};
/** Times in the browser's zone, compact; the tooltip has the time as sent. */
export const timeColumn = (label, get) =>
  column(
    label,
    "col-time",
    (item) => formatWhen(get(item)),
    (item) => cellText(get(item)),
  );

export function statusClass(status) {
  return typeof status === "number" ? `status s${Math.floor(status / 100)}xx` : "status";
}
