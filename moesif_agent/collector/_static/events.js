// The event list and one event: its columns, its detail pane (the exception of a failed call
// first), a permalink (#events/<id>) and "copy as curl".

import { h } from "./dom.js";
import {
  cellText,
  describeBody,
  eventDuration,
  formatTime,
  parseTime,
  splitUri,
} from "./format.js";
import {
  bodyView,
  column,
  headersView,
  idColumn,
  jsonSection,
  keyValues,
  rawSection,
  section,
  statusClass,
  timeColumn,
} from "./parts.js";

/** The exception of a failed call, from metadata._moesif.error: the agent sends the class
 * name ("ZeroDivisionError"), or {class, message}. */
export function exceptionOf(event) {
  const error = event.metadata?._moesif?.error;
  if (typeof error === "string" && error) return { name: error, message: "" };
  if (error && typeof error === "object") {
    return { name: cellText(error.class ?? "Error"), message: cellText(error.message ?? "") };
  }
  return null;
}

// Copy as curl ------------------------------------------------------------------------------

// Left out of the command: curl sets the first ones from the URL and the body it sends, a
// replayed Accept-Encoding would make curl print compressed bytes, and the transaction id
// would make the replay a duplicate of this event, which the collector drops.
const NOT_REPLAYED = new Set([
  "host",
  "content-length",
  "transfer-encoding",
  "connection",
  "keep-alive",
  "accept-encoding",
  "x-moesif-transaction-id",
]);

/** A shell word: single-quoted, with any ' closed, escaped and reopened. */
export const shellQuote = (text) => `'${String(text).replace(/'/g, `'\\''`)}'`;

/** The curl command that sends the request again, headers as stored (masked values stay
 * masked: the agent never had them). A binary body is piped in from its base64. */
export function curlCommand(event) {
  const request = event.request || {};
  const verb = cellText(request.verb || "GET").toUpperCase();
  const method = verb === "HEAD" ? "--head" : `-X ${shellQuote(verb)}`;
  const args = [`curl ${method} ${shellQuote(request.uri || "")}`];
  for (const [name, value] of Object.entries(request.headers || {})) {
    if (!NOT_REPLAYED.has(name.toLowerCase())) args.push(`-H ${shellQuote(`${name}: ${value}`)}`);
  }
  const body = describeBody(request);
  let pipe = "";
  if (body.kind === "binary") {
    pipe = `printf %s ${shellQuote(request.body)} | base64 -d | `;
    args.push("--data-binary @-");
  } else if (body.kind !== "none") {
    args.push(`--data-binary ${shellQuote(body.raw)}`);
  }
  return pipe + args.join(" \\\n  ");
}

/** The page's own address for `#events/<id>`. */
export function permalink(event) {
  return new URL(`#events/${event._id}`, document.baseURI).href;
}

/** A button that copies `text()` and says whether it could; the text is also shown in
 * `shown` (if given) for copying by hand, as a page on plain HTTP may not get the
 * clipboard. */
function copyButton(label, text, shown = null) {
  const status = h("span", { class: "copy-status", role: "status" });
  const button = h(
    "button",
    {
      type: "button",
      onclick: async () => {
        const value = text();
        if (shown) {
          shown.hidden = false;
          shown.textContent = value;
        }
        try {
          await navigator.clipboard.writeText(value);
          status.textContent = "copied";
        } catch {
          status.textContent = shown ? "select it below to copy" : value;
        }
      },
    },
    label,
  );
  return [button, status];
}

// The detail ----------------------------------------------------------------------------------

function eventDetail(event) {
  const request = event.request || {};
  const response = event.response;
  const notes = event.metadata?._moesif || {};
  const status = response?.status;
  const { host, path } = splitUri(request.uri);
  const exception = exceptionOf(event);
  const curl = h("pre", { class: "code curl", hidden: true });
  return [
    h(
      "h2",
      { class: "detail-title" },
      h("span", { class: "verb" }, cellText(request.verb)),
      " ",
      h("span", { class: "uri" }, path),
    ),
    host ? h("p", { class: "detail-host", title: "host" }, host) : null,
    h(
      "p",
      { class: "detail-summary" },
      h("span", { class: statusClass(status) }, response ? cellText(status) : "no response"),
      h("span", { class: "duration" }, eventDuration(event)),
      h("span", {}, formatTime(request.time)),
      event.direction === "Outgoing" ? h("span", { class: "badge out" }, "outgoing") : null,
      event.blocked_by
        ? h("span", { class: "badge blocked" }, `blocked by ${event.blocked_by}`)
        : null,
    ),
    exception
      ? h(
          "div",
          { class: "exception", role: "alert" },
          h("span", { class: "exception-label" }, "Exception"),
          h("strong", { class: "exception-class" }, exception.name),
          exception.message ? h("span", { class: "exception-message" }, exception.message) : null,
        )
      : null,
    h(
      "div",
      { class: "detail-actions" },
      copyButton("Copy link", () => permalink(event)),
      copyButton("Copy as curl", () => curlCommand(event), curl),
    ),
    curl,
    section(
      "Overview",
      keyValues([
        ["uri", request.uri],
        ["route", event.metadata?.route],
        ["transaction_id", event.transaction_id],
        ["direction", event.direction],
        ["request.time", request.time],
        ["response.time", response?.time],
        ["duration", eventDuration(event)],
        ["user_id", event.user_id],
        ["company_id", event.company_id],
        ["session_token", event.session_token],
        ["ip_address", request.ip_address],
        ["api_version", request.api_version],
        ["weight", event.weight],
        ["blocked_by", event.blocked_by],
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

// The list ------------------------------------------------------------------------------------

export const EVENTS = {
  name: "events",
  title: "Events",
  singular: "event",
  empty:
    "No events yet. Point an agent at this collector (base_uri / MOESIF_BASE_URI) " +
    "and send your app some requests.",
  sortKey: (e) => parseTime(e.request?.time) ?? 0,
  rowClass: (e) => [
    e.blocked_by ? "blocked" : "",
    e.direction === "Outgoing" ? "outgoing" : "",
    exceptionOf(e) ? "failed" : "",
  ],
  columns: [
    timeColumn("Time", (e) => e.request?.time),
    column("Method", "col-method", (e) => [
      cellText(e.request?.verb),
      e.direction === "Outgoing"
        ? h("span", { class: "badge out", title: "outgoing call" }, "out")
        : null,
    ]),
    // The path and query: the host is the same on most rows, so it is on hover only.
    column(
      "Path",
      "col-uri",
      (e) => splitUri(e.request?.uri).path,
      (e) => cellText(e.request?.uri),
    ),
    column("Status", "col-status", (e) => {
      const exception = exceptionOf(e);
      return [
        h(
          "span",
          { class: statusClass(e.response?.status) },
          e.response ? cellText(e.response.status) : "—",
        ),
        exception ? h("span", { class: "badge error", title: exception.name }, "!") : null,
      ];
    }),
    column("Duration", "col-num", (e) => eventDuration(e)),
    idColumn("User", (e) => e.user_id),
    idColumn("Company", (e) => e.company_id, "col-id col-optional"),
    idColumn("Route", (e) => e.metadata?.route, "col-id col-optional"),
    column("Weight", "col-num col-optional", (e) => cellText(e.weight ?? 1)),
  ],
  filters: [], // the shared filter bar's
  detail: eventDetail,
};
