// The local collector's dashboard: endpoints, traffic over time, events and people, all
// described by one filter bar, plus the actions and subscriptions lists. The location hash
// holds the view and its filters (#endpoints?range=1h, #events/42 for one event), so a
// reload or a shared link shows the same thing. Live refresh polls the visible view.

import { clearData, getJSON } from "./api.js";
import { TrafficView } from "./chart.js";
import { h, replace } from "./dom.js";
import { EndpointsView } from "./endpoints.js";
import { EVENTS } from "./events.js";
import { FILTER_NAMES, FilterBar } from "./filters.js";
import { formatCount } from "./format.js";
import { ResourceView } from "./listview.js";
import { KINDS, PeopleView } from "./people.js";
import { ACTIONS, SUBSCRIPTIONS } from "./resources.js";

const POLL_MS = 3000;
const LIVE_KEY = "moesif-viewer-live";
const TITLES = {
  endpoints: "Endpoints",
  traffic: "Traffic",
  events: "Events",
  people: "People",
  actions: "Actions",
  subscriptions: "Subscriptions",
};
// The views the filter bar describes; the others have filters of their own.
const DASHBOARD = new Set(["endpoints", "traffic", "events", "people"]);

class Viewer {
  constructor() {
    this.filters = new FilterBar();
    const events = new ResourceView(EVENTS, this.filters);
    this.views = new Map([
      // A click in a summary lists the events behind it.
      [
        "endpoints",
        new EndpointsView(this.filters, (e) => this.openEvents({ verb: e.verb, route: e.route })),
      ],
      [
        "traffic",
        new TrafficView(this.filters, (from, to) =>
          this.openEvents({ range: "custom", time__gt: from, time__lt: to }),
        ),
      ],
      ["events", events],
      [
        "people",
        new PeopleView(this.filters, (kind, id) => this.openEvents({ [KINDS[kind].key]: id })),
      ],
      ["actions", new ResourceView(ACTIONS)],
      ["subscriptions", new ResourceView(SUBSCRIPTIONS)],
    ]);
    this.events = events;
    this.tabs = new Map();
    this.current = null;
    this.live = document.getElementById("live");
    this.refreshed = document.getElementById("refreshed");
    this.stats = document.getElementById("stats");
    this.timer = null;
  }

  start() {
    const main = document.getElementById("views");
    const tabs = document.getElementById("tabs");
    main.append(this.filters.element);
    this.filters.onchange = () => this.onFiltersChange();
    this.events.onselect = () => this.writeHash();
    this.views.get("people").onkindchange = () => this.writeHash();
    for (const [name, view] of this.views) {
      main.append(view.element);
      view.onfilterschange = () => this.writeHash();
      const count = h("span", { class: "count" });
      const tab = h(
        "button",
        {
          type: "button",
          role: "tab",
          id: `tab-${name}`,
          "aria-controls": view.element.id,
          onclick: () => this.show(name),
        },
        TITLES[name],
        " ",
        count,
      );
      tab.count = count;
      this.tabs.set(name, tab);
      tabs.append(tab);
    }
    document.getElementById("clear").addEventListener("click", () => this.clear());
    this.live.checked = this.storedLive();
    this.live.addEventListener("change", () => this.onLiveChange());
    document.addEventListener("keydown", (e) => {
      if (e.key !== "Escape") return;
      if (this.current.selected != null) this.current.select(null);
      else this.current.closeProfile?.();
    });
    window.addEventListener("hashchange", () => this.readHash());
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && this.live.checked) this.poll();
    });
    this.readHash();
    this.refreshStats();
    this.schedule();
  }

  show(name, { load = true } = {}) {
    const view = this.views.get(name) || this.views.get("endpoints");
    this.current = view;
    for (const [other, otherView] of this.views) {
      otherView.element.hidden = otherView !== view;
      this.tabs.get(other).setAttribute("aria-selected", String(otherView === view));
    }
    this.filters.element.hidden = !DASHBOARD.has(name);
    if (load) {
      if (!view.loaded) view.reload();
      else if (this.live.checked) view.refresh();
    }
    this.writeHash();
  }

  /** The events behind a click elsewhere: the filter bar takes `changes`. */
  openEvents(changes) {
    this.filters.write({ ...this.filters.values, ...changes });
    this.events.select(null);
    this.show("events", { load: false });
    this.onFiltersChange();
  }

  onFiltersChange() {
    // Every dashboard view describes the same events: the hidden ones reload when shown.
    for (const [name, view] of this.views) {
      if (DASHBOARD.has(name)) view.loaded = false;
    }
    if (DASHBOARD.has(this.current.name)) this.current.reload();
    this.writeHash();
  }

  // The location hash: #<view>[/<id>][?<filters>]. Split before decoding: a filter value may
  // itself contain "?" or "&" (a path regex).
  readHash() {
    const hash = location.hash.slice(1);
    const at = hash.indexOf("?");
    const [name, id] = (at < 0 ? hash : hash.slice(0, at)).split("/");
    const params = Object.fromEntries(new URLSearchParams(at < 0 ? "" : hash.slice(at + 1)));
    const target = this.views.has(name) ? name : "endpoints";
    const view = this.views.get(target);
    if (DASHBOARD.has(target)) {
      const before = JSON.stringify(this.filters.values);
      const values = FILTER_NAMES.filter((n) => params[n]).map((n) => [n, params[n]]);
      this.filters.write(Object.fromEntries(values));
      if (JSON.stringify(this.filters.values) !== before) {
        for (const dashboardName of DASHBOARD) this.views.get(dashboardName).loaded = false;
      }
      if (target === "people" && params.kind && params.kind !== view.kind) {
        view.setKind(params.kind, { load: false });
      }
    } else {
      const before = JSON.stringify(view.filters);
      view.writeFilters(params);
      if (view.loaded && JSON.stringify(view.filters) !== before) view.reload();
    }
    if (view !== this.current || !view.loaded) this.show(target);
    if (target === "events" && /^\d+$/.test(id || "")) this.events.open(Number(id));
    else if (target === "events" && this.events.selected !== null) this.events.select(null);
  }

  writeHash() {
    if (!this.current) return;
    const { name } = this.current;
    let values = DASHBOARD.has(name) ? { ...this.filters.values } : this.current.filters;
    if (name === "people" && this.current.kind !== "users") {
      values = { ...values, kind: this.current.kind };
    }
    const query = new URLSearchParams(values).toString();
    const id = name === "events" && this.events.selected !== null ? `/${this.events.selected}` : "";
    const hash = `#${name}${id}${query ? "?" + query : ""}`;
    // replaceState: filter edits should not fill the back button's history.
    if (hash !== location.hash) history.replaceState(null, "", hash);
  }

  // Clearing ----------------------------------------------------------------------------------

  async clear() {
    const stats = this.lastStats || {};
    const counts = ["events", "actions", "users", "companies", "subscriptions"]
      .filter((name) => stats[name])
      .map((name) => `${formatCount(stats[name])} ${name}`);
    const what = counts.length ? ` (${counts.join(", ")})` : "";
    const question = `Delete everything this collector stored${what}? This cannot be undone.`;
    if (!window.confirm(question)) return;
    try {
      await clearData();
    } catch (error) {
      replace(this.stats, h("span", { class: "error" }, `Could not clear: ${error.message}`));
      return;
    }
    this.events.select(null);
    for (const view of this.views.values()) view.loaded = false;
    await Promise.allSettled([this.refreshStats(), this.current.reload()]);
  }

  // Live refresh ------------------------------------------------------------------------------

  storedLive() {
    try {
      return localStorage.getItem(LIVE_KEY) !== "off";
    } catch {
      return true; // storage disabled: live by default
    }
  }

  onLiveChange() {
    try {
      localStorage.setItem(LIVE_KEY, this.live.checked ? "on" : "off");
    } catch {
      // storage disabled: the choice lasts until the page is reloaded
    }
    if (this.live.checked) this.poll();
    else this.refreshed.textContent = "paused";
  }

  schedule() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.poll(), POLL_MS);
  }

  async poll() {
    clearTimeout(this.timer);
    if (this.live.checked && !document.hidden) {
      await Promise.allSettled([this.refreshStats(), this.current.refresh()]);
      this.refreshed.textContent = `updated ${new Date().toLocaleTimeString()}`;
    }
    this.schedule();
  }

  async refreshStats() {
    let stats;
    try {
      stats = await getJSON("api/stats");
    } catch (error) {
      replace(this.stats, h("span", { class: "error" }, error.message));
      return;
    }
    this.lastStats = stats;
    for (const [name, tab] of this.tabs) {
      tab.count.textContent = typeof stats[name] === "number" ? formatCount(stats[name]) : "";
    }
    const byStatus = Object.entries(stats.events_by_status || {}).map(([group, count]) =>
      h(
        "span",
        { class: `chip status s${group}`, title: `${count} events with status ${group}` },
        `${group} ${formatCount(count)}`,
      ),
    );
    replace(
      this.stats,
      h("span", { class: "chip" }, `${formatCount(stats.events)} events`),
      byStatus,
      stats.blocked ? h("span", { class: "chip blocked" }, `${stats.blocked} blocked`) : null,
    );
  }
}

new Viewer().start();
