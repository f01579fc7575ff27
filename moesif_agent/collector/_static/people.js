// People: the users and companies seen in traffic (GET /api/people/users|companies), with
// their calls, errors and last call, merged with the profile update_user / update_company
// sent. A click lists the person's calls; "Profile" shows what the profile holds.

import { h, replace } from "./dom.js";
import { cellText, formatCount, formatWhen } from "./format.js";
import { showDetail } from "./listview.js";
import { profileDetail } from "./resources.js";
import { SortableTable, SummaryView } from "./summary.js";

export const KINDS = {
  users: { key: "user_id", singular: "user", title: "Users" },
  companies: { key: "company_id", singular: "company", title: "Companies" },
};

const profileName = (p) =>
  p?.metadata?.name ??
  p?.metadata?.company_name ??
  ([p?.metadata?.first_name, p?.metadata?.last_name].filter(Boolean).join(" ") || null);

function columns(kind, onprofile) {
  const text = (key, label, get, className = "col-id") => ({
    key,
    label,
    class: className,
    value: (item) => cellText(get(item)),
    title: (item) => cellText(get(item)),
    sort: (item) => cellText(get(item)),
    descending: false,
  });
  const count = (key, label) => ({
    key,
    label,
    class: "col-num",
    value: (item) => formatCount(item[key]),
    sort: (item) => item[key],
  });
  return [
    text("id", kind === "users" ? "User" : "Company", (item) => item.id),
    text("name", "Name", (item) => profileName(item.profile), "col-name"),
    kind === "users"
      ? text("email", "Email", (item) => item.profile?.metadata?.email, "col-name")
      : text("domain", "Domain", (item) => item.profile?.company_domain, "col-name"),
    kind === "users"
      ? text("company", "Company", (item) => item.profile?.company_id, "col-id col-optional")
      : null,
    count("calls", "Calls"),
    count("errors", "Errors"),
    {
      key: "last_seen",
      label: "Last call",
      class: "col-time",
      value: (item) => formatWhen(item.last_seen),
      title: (item) => cellText(item.last_seen),
      sort: (item) => item.last_seen ?? "",
    },
    {
      key: "profile",
      label: "Profile",
      class: "col-profile",
      value: (item) =>
        item.profile
          ? h(
              "button",
              {
                type: "button",
                class: "small",
                onclick: (e) => {
                  e.stopPropagation();
                  onprofile(item);
                },
              },
              "Profile",
            )
          : h("span", { class: "muted" }, "none"),
      sort: (item) => (item.profile ? 1 : 0),
    },
  ].filter(Boolean);
}

export class PeopleView extends SummaryView {
  constructor(shared, onopen) {
    super("people", shared);
    this.kind = "users";
    this.onopen = onopen;
    this.switcher = h(
      "div",
      { class: "switch", role: "group", "aria-label": "Show" },
      Object.entries(KINDS).map(([kind, def]) =>
        h(
          "button",
          { type: "button", dataset: { kind }, onclick: () => this.setKind(kind) },
          def.title,
        ),
      ),
    );
    this.detail = h("aside", { class: "detail", hidden: true, "aria-label": "Profile" });
    this.tables = {};
    for (const kind of Object.keys(KINDS)) {
      this.tables[kind] = new SortableTable(
        `list-people list-${kind}`,
        columns(kind, (item) => this.showProfile(item)),
        { key: "calls", descending: true },
        (item) => onopen(kind, item.id),
      );
    }
    this.pane = h("div", { class: "list-pane" });
    replace(this.body, this.switcher, h("div", { class: "panes" }, this.pane, this.detail));
    this.setKind("users", { load: false });
  }

  /** Users or companies; `onkindchange` lets the page put it in the location hash. */
  setKind(kind, { load = true } = {}) {
    this.kind = KINDS[kind] ? kind : "users";
    for (const button of this.switcher.children) {
      button.setAttribute("aria-pressed", String(button.dataset.kind === this.kind));
    }
    replace(this.pane, this.tables[this.kind].element);
    this.closeProfile();
    if (load) {
      this.onkindchange?.();
      this.refresh();
    }
  }

  showProfile(item) {
    const def = KINDS[this.kind];
    const profile = { [def.key]: item.id, ...item.profile };
    showDetail(this.detail, profileDetail(def.key)(profile), () => this.closeProfile());
  }

  closeProfile() {
    showDetail(this.detail, null);
  }

  request() {
    return [`api/people/${this.kind}`, {}];
  }

  render(data) {
    this.tables[data.kind].setItems(data.items);
    const def = KINDS[data.kind];
    const shown = data.items.length;
    if (!shown) {
      this.setStatus(
        this.shared.active
          ? `No ${def.title.toLowerCase()} in the calls that match these filters.`
          : `No ${def.title.toLowerCase()} yet: the agent's identify_${def.singular} callback ` +
              `(or update_${def.singular}) names them.`,
      );
      return;
    }
    const more = data.total > shown ? ` (the ${shown} busiest of ${data.total})` : "";
    const noun = shown === 1 ? def.singular : def.title.toLowerCase();
    this.setStatus(`${shown} ${noun}${more}. Click one to see their calls.`);
  }
}
