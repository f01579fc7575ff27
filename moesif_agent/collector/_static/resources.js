// The read API lists that keep a tab and a filter form of their own: actions and
// subscriptions (users and companies are in the People view, events in events.js).

import { h } from "./dom.js";
import { cellText, parseTime } from "./format.js";
import { idColumn, jsonSection, keyValues, rawSection, section, timeColumn } from "./parts.js";

const text = (name, label, placeholder = "") => ({ name, label, type: "text", placeholder });
const TIME_RANGE = [
  { name: "time__gt", label: "From", type: "datetime" },
  { name: "time__lt", label: "To", type: "datetime" },
];

// Actions --------------------------------------------------------------------------------------

export const ACTIONS = {
  name: "actions",
  title: "Actions",
  singular: "action",
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

// Profiles -----------------------------------------------------------------------------------

/** Detail of a user, company or subscription: its scalar fields, then each object field. */
export function profileDetail(key) {
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

const UPDATED = timeColumn("Updated", (p) => p._received_at);

export const SUBSCRIPTIONS = {
  name: "subscriptions",
  title: "Subscriptions",
  singular: "subscription",
  empty: "No subscriptions yet (the agent's update_subscription).",
  sortKey: (s) => s._id ?? 0, // newest created first; an update keeps its place
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
