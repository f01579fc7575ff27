// What the viewer shows of each read API list (/api/<name>): table columns, filters (named as
// the API's query parameters) and the detail view of one item.

import { h } from "./dom.js";
import {
  cellText,
  describeBody,
  durationMs,
  formatDuration,
  formatTime,
  parseTime,
  prettyJSON,
} from "./format.js";

// Filters --------------------------------------------------------------------------------------

const text = (name, label, placeholder = "", list = undefined) => ({
  name,
  label,
  type: "text",
  placeholder,
  list,
});
const select = (name, label, options) => ({ name, label, type: "select", options });
const TIME_RANGE = [
  { name: "time__gt", label: "From", type: "datetime" },
  { name: "time__lt", label: "To", type: "datetime" },
];
export const VERBS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

// Detail building blocks -----------------------------------------------------------------------

function section(title, ...content) {
  return h("section", { class: "detail-section" }, h("h3", {}, title), ...content);
}

/** A two-column table of the entries whose value is present. */
function keyValues(entries, className = "kv") {
  const rows = entries
    .filter(([, value]) => value !== undefined && value !== null && value !== "")
    .map(([key, value]) =>
      h("tr", {}, h("th", { scope: "row" }, key), h("td", {}, cellText(value))),
    );
  return rows.length ? h("table", { class: className }, h("tbody", {}, rows)) : null;
}

function headersView(headers) {
  if (!headers || typeof headers !== "object" || !Object.keys(headers).length) {
    return h("p", { class: "muted" }, "no headers");
  }
  return keyValues(Object.entries(headers), "kv headers");
}

function truncationNote(note) {
  if (!note || !note.truncated) return null;
  return h(
    "p",
    { class: "warning" },
    `truncated by the agent: ${note.captured} of ${note.size} bytes captured`,
  );
}

function bodyView(part, note) {
  const body = describeBody(part);
  if (body.kind === "none") return h("p", { class: "muted" }, "no body");
  const label = h("p", { class: `body-label body-${body.kind}` }, body.label);
  if (body.kind === "binary") {
    return [
      label,
      truncationNote(note),
      h("details", {}, h("summary", {}, "hex preview"), h("pre", { class: "code" }, body.text)),
    ];
  }
  return [label, truncationNote(note), h("pre", { class: "code body" }, body.text)];
}

function jsonSection(title, value) {
  if (value === undefined || value === null) return null;
  return section(title, h("pre", { class: "code" }, prettyJSON(value)));
}

function rawSection(item) {
  return h(
    "details",
    { class: "detail-section raw" },
    h("summary", {}, "Raw JSON, as stored"),
    h("pre", { class: "code" }, prettyJSON(item)),
  );
}

/** A table column; `value` returns text or nodes, `title` the tooltip (the full value). */
const column = (label, className, value, title = undefined) => ({
  label,
  class: className,
  value,
  title,
});
/** A column of an identifier (user, company...): often long, so cut, with a tooltip. */
const idColumn = (label, get, className = "col-id") => {
  const show = (item) => cellText(get(item));
  return column(label, className, show, show);
};
/** Times in the browser's zone; the tooltip has the time as sent. */
const timeColumn = (label, get) =>
  column(
    label,
    "col-time",
    (item) => formatTime(get(item)),
    (item) => cellText(get(item)),
  );

function statusClass(status) {
  return typeof status === "number" ? `status s${Math.floor(status / 100)}xx` : "status";
}

// Events ---------------------------------------------------------------------------------------

function eventDetail(event) {
  const request = event.request || {};
  const response = event.response;
  const notes = event.metadata?._moesif || {};
  const status = response?.status;
  return [
    h(
      "h2",
      { class: "detail-title" },
      h("span", { class: "verb" }, cellText(request.verb)),
      " ",
      h("span", { class: "uri" }, cellText(request.uri)),
    ),
    h(
      "p",
      { class: "detail-summary" },
      h("span", { class: statusClass(status) }, response ? cellText(status) : "no response"),
      h("span", {}, formatDuration(durationMs(event))),
      h("span", {}, formatTime(request.time)),
      event.blocked_by
        ? h("span", { class: "badge blocked" }, `blocked by ${event.blocked_by}`)
        : null,
    ),
    section(
      "Overview",
      keyValues([
        ["transaction_id", event.transaction_id],
        ["direction", event.direction],
        ["request.time", request.time],
        ["response.time", response?.time],
        ["duration", formatDuration(durationMs(event))],
        ["user_id", event.user_id],
        ["company_id", event.company_id],
        ["session_token", event.session_token],
        ["ip_address", request.ip_address],
        ["api_version", request.api_version],
        ["weight", event.weight],
        ["blocked_by", event.blocked_by],
        ["route", event.metadata?.route],
        ["_id", event._id],
        ["_received_at", event._received_at],
      ]),
    ),
    section("Request headers", headersView(request.headers)),
    section("Request body", bodyView(request, notes.request_body)),
    response ? section("Response headers", headersView(response.headers)) : null,
    response ? section("Response body", bodyView(response, notes.response_body)) : null,
    jsonSection("Metadata", event.metadata),
    rawSection(event),
  ];
}

const EVENTS = {
  name: "events",
  title: "Events",
  empty:
    "No events yet. Point an agent at this collector (base_uri / MOESIF_BASE_URI) " +
    "and send your app some requests.",
  sortKey: (e) => parseTime(e.request?.time) ?? 0,
  rowClass: (e) => [e.blocked_by ? "blocked" : "", e.direction === "Outgoing" ? "outgoing" : ""],
  columns: [
    timeColumn("Time", (e) => e.request?.time),
    column("Method", "col-method", (e) => [
      cellText(e.request?.verb),
      e.direction === "Outgoing"
        ? h("span", { class: "badge out", title: "outgoing call" }, "out")
        : null,
    ]),
    idColumn("URI", (e) => e.request?.uri, "col-uri"),
    column("Status", "col-status", (e) =>
      h(
        "span",
        { class: statusClass(e.response?.status) },
        e.response ? cellText(e.response.status) : "—",
      ),
    ),
    column("Duration", "col-num", (e) => formatDuration(durationMs(e))),
    idColumn("User", (e) => e.user_id),
    idColumn("Company", (e) => e.company_id, "col-id col-optional"),
    idColumn("Blocked by", (e) => e.blocked_by, "col-id col-optional"),
    column("Weight", "col-num col-optional", (e) => cellText(e.weight ?? 1)),
  ],
  filters: [
    text("verb", "Method", "any", "verbs"),
    text("status", "Status", "200 or 5xx"),
    text("route", "Path regex", "^/items"),
    text("user_id", "User"),
    text("company_id", "Company"),
    select("blocked", "Blocked", [
      ["", "any"],
      ["true", "blocked"],
      ["false", "not blocked"],
    ]),
    select("direction", "Direction", [
      ["", "any"],
      ["Incoming", "incoming"],
      ["Outgoing", "outgoing"],
    ]),
    text("transaction_id", "Transaction"),
    ...TIME_RANGE,
  ],
  detail: eventDetail,
};

// Actions --------------------------------------------------------------------------------------

const ACTIONS = {
  name: "actions",
  title: "Actions",
  empty: "No actions yet (the agent's track_action).",
  // Actions without a time are ordered by when they arrived, as the collector does.
  sortKey: (a) => parseTime(a.request?.time) ?? parseTime(a._received_at) ?? 0,
  columns: [
    timeColumn("Time", (a) => a.request?.time ?? a._received_at),
    idColumn("Action", (a) => a.action_name),
    idColumn("User", (a) => a.user_id),
    idColumn("Company", (a) => a.company_id),
    idColumn("URI", (a) => a.request?.uri, "col-uri"),
  ],
  filters: [
    text("action_name", "Action"),
    text("user_id", "User"),
    text("company_id", "Company"),
    text("transaction_id", "Transaction"),
    ...TIME_RANGE,
  ],
  detail: (a) => [
    h("h2", { class: "detail-title" }, cellText(a.action_name)),
    section(
      "Overview",
      keyValues([
        ["transaction_id", a.transaction_id],
        ["user_id", a.user_id],
        ["company_id", a.company_id],
        ["session_token", a.session_token],
        ["request.time", a.request?.time],
        ["request.uri", a.request?.uri],
        ["request.ip_address", a.request?.ip_address],
        ["request.user_agent_string", a.request?.user_agent_string],
        ["_id", a._id],
        ["_received_at", a._received_at],
      ]),
    ),
    jsonSection("Metadata", a.metadata),
    rawSection(a),
  ],
};

// Profiles -------------------------------------------------------------------------------------

/** Detail of a user, company or subscription: its scalar fields, then each object field. */
function profileDetail(key) {
  return (item) => {
    const scalars = Object.entries(item).filter(([, v]) => v === null || typeof v !== "object");
    const objects = Object.entries(item).filter(([, v]) => v !== null && typeof v === "object");
    return [
      h("h2", { class: "detail-title" }, cellText(item[key])),
      section("Overview", keyValues(scalars)),
      ...objects.map(([name, value]) => jsonSection(name, value)),
      rawSection(item),
    ];
  };
}

const personName = (u) =>
  u.metadata?.name ?? [u.metadata?.first_name, u.metadata?.last_name].filter(Boolean).join(" ");
// Profiles are listed newest created first (by the collector's _id), updates keep their place.
const byId = (item) => item._id ?? 0;
const UPDATED = timeColumn("Updated", (p) => p._received_at);
const CREATED = timeColumn("Created", (p) => p._created_at);

const USERS = {
  name: "users",
  title: "Users",
  empty: "No users yet (the agent's update_user).",
  sortKey: byId,
  columns: [
    idColumn("User", (u) => u.user_id),
    idColumn("Company", (u) => u.company_id),
    idColumn("Name", personName, ""),
    idColumn("Email", (u) => u.metadata?.email, ""),
    CREATED,
    UPDATED,
  ],
  filters: [text("company_id", "Company")],
  detail: profileDetail("user_id"),
};

const COMPANIES = {
  name: "companies",
  title: "Companies",
  empty: "No companies yet (the agent's update_company).",
  sortKey: byId,
  columns: [
    idColumn("Company", (c) => c.company_id),
    idColumn("Domain", (c) => c.company_domain, ""),
    idColumn("Name", (c) => c.metadata?.name ?? c.metadata?.company_name, ""),
    CREATED,
    UPDATED,
  ],
  filters: [],
  detail: profileDetail("company_id"),
};

const SUBSCRIPTIONS = {
  name: "subscriptions",
  title: "Subscriptions",
  empty: "No subscriptions yet (the agent's update_subscription).",
  sortKey: byId,
  columns: [
    idColumn("Subscription", (s) => s.subscription_id),
    idColumn("Company", (s) => s.company_id),
    idColumn("Status", (s) => s.status, ""),
    timeColumn("Period start", (s) => s.current_period_start),
    timeColumn("Period end", (s) => s.current_period_end),
    UPDATED,
  ],
  filters: [text("company_id", "Company"), text("status", "Status", "active")],
  detail: profileDetail("subscription_id"),
};

export const RESOURCES = [EVENTS, USERS, COMPANIES, SUBSCRIPTIONS, ACTIONS];
