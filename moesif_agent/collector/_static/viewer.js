// The local collector's viewer: one tab per read API list, each with its filters, a table that
// pages through the list ("Load more" follows next_cursor), and a detail pane for the row
// clicked. Live refresh polls the visible tab and the counts; it merges what is new into the
// table, so typed filters, the scroll position and the open detail all stay as they are.

import { h, replace } from "./dom.js";
import { RESOURCES, VERBS } from "./resources.js";

const PAGE_SIZE = 100;
const POLL_MS = 3000;
const LIVE_KEY = "moesif-viewer-live";
const TYPING_DELAY_MS = 400;

/** GET a read API path (relative to the page) with the non-empty params; throws an Error whose
 * message is the collector's own explanation (it names the bad filter) when it answers 4xx. */
async function getJSON(path, params = {}) {
  const url = new URL(path, document.baseURI);
  for (const [name, value] of Object.entries(params)) {
    if (value !== "" && value !== null && value !== undefined) url.searchParams.set(name, value);
  }
  let response;
  try {
    response = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
  } catch {
    throw new Error("cannot reach the collector");
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    // an error page that is not JSON: the status says enough
  }
  if (!response.ok) {
    const error = new Error(body?.error || `HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

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

class ResourceView {
  constructor(def) {
    this.def = def;
    this.items = [];
    this.byKey = new Map();
    this.cursor = null;
    this.filters = {};
    this.selected = null; // _id of the open item; its data stays shown even if it leaves the list
    this.selectedItem = null;
    this.generation = 0; // bumped by each reload: answers to older requests are dropped
    this.busy = false;
    this.loaded = false;
    this.error = null;
    this.rejected = false; // the collector refused the filters (400): polling would only repeat it
    this.build();
  }

  // Building ----------------------------------------------------------------------------------

  build() {
    const { def } = this;
    this.form = h(
      "form",
      { class: "filters", "aria-label": `${def.title} filters`, onsubmit: (e) => this.onSubmit(e) },
      def.filters.map((filter) => this.filterField(filter)),
      h(
        "div",
        { class: "filter-buttons" },
        def.filters.length ? h("button", { type: "submit" }, "Apply") : null,
        def.filters.length
          ? h("button", { type: "button", onclick: () => this.clearFilters() }, "Clear")
          : null,
        h("button", { type: "button", onclick: () => this.reload() }, "Reload"),
      ),
    );
    this.tbody = h("tbody", {
      onclick: (e) => this.onRowEvent(e),
      onkeydown: (e) => this.onRowKey(e),
    });
    this.table = h(
      "table",
      { class: `list list-${def.name}` },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          def.columns.map((c) => h("th", { class: c.class, scope: "col" }, c.label)),
        ),
      ),
      this.tbody,
    );
    this.status = h("p", { class: "list-status", role: "status" });
    this.more = h(
      "button",
      { type: "button", class: "more", hidden: true, onclick: () => this.loadMore() },
      "Load more",
    );
    this.scroller = h("div", { class: "list-scroller" }, this.table);
    this.detail = h("aside", { class: "detail", hidden: true, "aria-label": "Details" });
    this.element = h(
      "section",
      { class: "view", id: `view-${def.name}`, role: "tabpanel", hidden: true },
      this.form,
      h(
        "div",
        { class: "panes" },
        h(
          "div",
          { class: "list-pane" },
          this.scroller,
          h("div", { class: "list-footer" }, this.status, this.more),
        ),
        this.detail,
      ),
    );
  }

  filterField(filter) {
    let input;
    if (filter.type === "select") {
      input = h(
        "select",
        { name: filter.name, onchange: () => this.apply() },
        filter.options.map(([value, label]) => h("option", { value }, label)),
      );
    } else if (filter.type === "datetime") {
      input = h("input", {
        type: "datetime-local",
        step: 1,
        name: filter.name,
        onchange: () => this.apply(),
      });
    } else {
      input = h("input", {
        type: "search",
        name: filter.name,
        placeholder: filter.placeholder || "",
        list: filter.list,
        autocomplete: "off",
        spellcheck: "false",
        oninput: () => this.applySoon(),
      });
    }
    return h(
      "label",
      { class: `filter filter-${filter.type}` },
      h("span", {}, filter.label),
      input,
    );
  }

  // Filters -----------------------------------------------------------------------------------

  readFilters() {
    const filters = {};
    for (const filter of this.def.filters) {
      let value = this.form.elements[filter.name].value.trim();
      if (filter.type === "datetime" && value) value = localInputToISO(value);
      if (value) filters[filter.name] = value;
    }
    return filters;
  }

  writeFilters(filters) {
    for (const filter of this.def.filters) {
      const value = filters[filter.name] ?? "";
      this.form.elements[filter.name].value =
        filter.type === "datetime" && value ? isoToLocalInput(value) : value;
    }
    this.filters = this.readFilters();
  }

  onSubmit(event) {
    event.preventDefault();
    this.apply();
  }

  // While typing, wait for a pause: a half-typed regex or status would only earn a 400.
  applySoon() {
    clearTimeout(this.typingTimer);
    this.typingTimer = setTimeout(() => this.apply(), TYPING_DELAY_MS);
  }

  apply() {
    clearTimeout(this.typingTimer);
    const filters = this.readFilters();
    if (JSON.stringify(filters) === JSON.stringify(this.filters) && this.loaded) return;
    this.filters = filters;
    this.onfilterschange?.();
    this.reload();
  }

  clearFilters() {
    this.form.reset();
    this.apply();
  }

  // Loading -----------------------------------------------------------------------------------

  params(extra = {}) {
    return { ...this.filters, limit: PAGE_SIZE, ...extra };
  }

  /** The first page for the current filters, replacing the list. */
  async reload() {
    const generation = ++this.generation;
    this.busy = true;
    this.renderStatus("loading…");
    try {
      const page = await getJSON(`api/${this.def.name}`, this.params());
      if (generation !== this.generation) return;
      this.error = null;
      this.rejected = false;
      this.loaded = true;
      this.setItems(page.items, page.next_cursor);
    } catch (error) {
      if (generation !== this.generation) return;
      // The list no longer matches the filters: better empty than misleading.
      this.error = error.message;
      this.rejected = error.status === 400;
      this.setItems([], null);
    } finally {
      if (generation === this.generation) this.busy = false;
    }
  }

  async loadMore() {
    if (!this.cursor || this.busy) return;
    const generation = this.generation;
    this.busy = true;
    this.more.disabled = true;
    try {
      const page = await getJSON(`api/${this.def.name}`, this.params({ cursor: this.cursor }));
      if (generation !== this.generation) return;
      this.error = null;
      for (const item of page.items) {
        if (!this.byKey.has(item._id)) {
          this.items.push(item);
          this.byKey.set(item._id, item);
        }
      }
      this.cursor = page.next_cursor;
      this.renderRows();
    } catch (error) {
      if (generation === this.generation) {
        this.error = error.message;
        this.renderStatus();
      }
    } finally {
      if (generation === this.generation) this.busy = false;
      this.more.disabled = false;
    }
  }

  /** Live refresh: fetch the first page again and merge what is new or changed into the list,
   * so rows loaded with "Load more" stay. When the whole first page is new, there may be a gap
   * between it and the rows shown: then it replaces the list, as a reload would. */
  async refresh() {
    if (this.rejected) return; // the same filters would earn the same 400
    if (!this.loaded) return this.reload();
    if (this.busy) return;
    const generation = this.generation;
    this.busy = true;
    try {
      const page = await getJSON(`api/${this.def.name}`, this.params());
      if (generation !== this.generation) return;
      const hadError = this.error !== null;
      this.error = null;
      const fresh = page.items.filter((item) => !this.byKey.has(item._id));
      const changed = page.items.filter((item) => {
        const old = this.byKey.get(item._id);
        return old && old._received_at !== item._received_at; // a profile was updated
      });
      if (fresh.length && fresh.length === page.items.length) {
        this.setItems(page.items, page.next_cursor);
      } else if (fresh.length || changed.length) {
        for (const item of changed) this.items[this.items.indexOf(this.byKey.get(item._id))] = item;
        this.items.push(...fresh);
        this.setItems(this.items, this.cursor, { keepScroll: true });
      } else if (hadError) {
        this.renderStatus();
      }
    } catch (error) {
      if (generation === this.generation) {
        this.error = error.message;
        this.renderStatus();
      }
    } finally {
      if (generation === this.generation) this.busy = false;
    }
  }

  setItems(items, cursor, { keepScroll = false } = {}) {
    const sortKey = this.def.sortKey;
    // The collector's order: newest first by sort key, then by _id.
    this.items = [...items].sort((a, b) => sortKey(b) - sortKey(a) || (b._id ?? 0) - (a._id ?? 0));
    this.byKey = new Map(this.items.map((item) => [item._id, item]));
    this.cursor = cursor;
    const current = this.byKey.get(this.selected);
    if (
      current &&
      current !== this.selectedItem &&
      current._received_at !== this.selectedItem?._received_at
    ) {
      this.selectedItem = current;
      this.renderDetail();
    }
    // Rows added above the visible ones must not push what the reader is looking at away.
    const before = this.scroller.scrollHeight;
    this.renderRows();
    if (keepScroll && this.scroller.scrollTop > 0) {
      this.scroller.scrollTop += this.scroller.scrollHeight - before;
    }
  }

  // Rendering ---------------------------------------------------------------------------------

  renderRows() {
    const { def } = this;
    const rows = this.items.map((item) => {
      const classes = [
        ...(def.rowClass?.(item) || []),
        item._id === this.selected ? "selected" : "",
      ];
      return h(
        "tr",
        {
          tabindex: 0,
          class: classes.filter(Boolean).join(" "),
          dataset: { key: String(item._id) },
        },
        def.columns.map((column) =>
          h(
            "td",
            { class: column.class, title: column.title?.(item) ?? undefined },
            column.value(item),
          ),
        ),
      );
    });
    replace(this.tbody, rows);
    this.more.hidden = !this.cursor;
    this.renderStatus();
  }

  renderStatus(message) {
    const noun = this.def.title.toLowerCase();
    let text = message;
    if (text === undefined) {
      if (this.error) text = `Error: ${this.error}`;
      else if (!this.items.length)
        text = Object.keys(this.filters).length
          ? `No ${noun} match these filters.`
          : this.def.empty;
      else text = `${this.items.length} ${noun} shown${this.cursor ? "; more below" : ""}`;
    }
    this.status.classList.toggle("error", Boolean(this.error) && message === undefined);
    this.status.textContent = text;
  }

  renderDetail() {
    const item = this.selectedItem;
    if (!item) {
      this.detail.hidden = true;
      replace(this.detail);
      return;
    }
    this.detail.hidden = false;
    replace(
      this.detail,
      h(
        "button",
        {
          type: "button",
          class: "close",
          title: "Close (Esc)",
          "aria-label": "Close details",
          onclick: () => this.select(null),
        },
        "×",
      ),
      h("div", { class: "detail-body" }, this.def.detail(item)),
    );
    this.detail.scrollTop = 0;
  }

  // Selection ---------------------------------------------------------------------------------

  select(key) {
    this.selected = key;
    this.selectedItem = key === null ? null : (this.byKey.get(key) ?? null);
    for (const row of this.tbody.rows) {
      row.classList.toggle("selected", row.dataset.key === String(key));
    }
    this.renderDetail();
  }

  rowKey(row) {
    return Number(row.dataset.key);
  }

  onRowEvent(event) {
    const row = event.target.closest("tr");
    // A click that ends a text selection is for copying, not for opening.
    if (row && !String(window.getSelection())) this.select(this.rowKey(row));
  }

  onRowKey(event) {
    const row = event.target.closest("tr");
    if (!row) return;
    let target = null;
    if (event.key === "Enter" || event.key === " ") target = row;
    else if (event.key === "ArrowDown" || event.key === "j") target = row.nextElementSibling;
    else if (event.key === "ArrowUp" || event.key === "k") target = row.previousElementSibling;
    if (!target) return;
    event.preventDefault();
    target.focus();
    this.select(this.rowKey(target));
  }
}

// The page -------------------------------------------------------------------------------------

class Viewer {
  constructor() {
    this.views = new Map(RESOURCES.map((def) => [def.name, new ResourceView(def)]));
    this.tabs = new Map();
    this.current = null;
    this.live = document.getElementById("live");
    this.refreshed = document.getElementById("refreshed");
    this.stats = document.getElementById("stats");
    this.timer = null;
  }

  start() {
    const views = document.getElementById("views");
    const tabs = document.getElementById("tabs");
    views.append(
      h(
        "datalist",
        { id: "verbs" },
        VERBS.map((verb) => h("option", { value: verb })),
      ),
    );
    for (const [name, view] of this.views) {
      views.append(view.element);
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
        view.def.title,
        " ",
        count,
      );
      tab.count = count;
      this.tabs.set(name, tab);
      tabs.append(tab);
    }
    this.live.checked = this.storedLive();
    this.live.addEventListener("change", () => this.onLiveChange());
    document.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && this.current && this.current.selected !== null) {
        this.current.select(null);
      }
    });
    window.addEventListener("hashchange", () => this.readHash());
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && this.live.checked) this.poll();
    });
    this.readHash();
    this.refreshStats();
    this.schedule();
  }

  show(name) {
    const view = this.views.get(name) || this.views.get("events");
    this.current = view;
    for (const [other, otherView] of this.views) {
      otherView.element.hidden = otherView !== view;
      this.tabs.get(other).setAttribute("aria-selected", String(otherView === view));
    }
    if (!view.loaded) view.reload();
    else if (this.live.checked) view.refresh();
    this.writeHash();
  }

  // The location hash holds the tab and its filters (#events?verb=POST), so a reload or a
  // shared link shows the same list.
  readHash() {
    // Split before decoding: a filter value may itself contain "?" or "&" (a route regex).
    const hash = location.hash.slice(1);
    const at = hash.indexOf("?");
    const name = at < 0 ? hash : hash.slice(0, at);
    const view = this.views.get(name) || this.views.get("events");
    const filters = Object.fromEntries(new URLSearchParams(at < 0 ? "" : hash.slice(at + 1)));
    const before = JSON.stringify(view.filters);
    view.writeFilters(filters);
    if (view.loaded && JSON.stringify(view.filters) !== before) view.reload();
    if (view !== this.current) this.show(view.def.name);
  }

  writeHash() {
    if (!this.current) return;
    const query = new URLSearchParams(this.current.filters).toString();
    const hash = `#${this.current.def.name}${query ? "?" + query : ""}`;
    // replaceState: filter edits should not fill the back button's history.
    if (hash !== location.hash) history.replaceState(null, "", hash);
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
    for (const [name, tab] of this.tabs) {
      tab.count.textContent = typeof stats[name] === "number" ? String(stats[name]) : "";
    }
    const byStatus = Object.entries(stats.events_by_status || {}).map(([group, count]) =>
      h(
        "span",
        { class: `chip status s${group}`, title: `${count} events with status ${group}` },
        `${group} ${count}`,
      ),
    );
    replace(
      this.stats,
      h("span", { class: "chip" }, `${stats.events} events`),
      byStatus,
      stats.blocked ? h("span", { class: "chip blocked" }, `${stats.blocked} blocked`) : null,
    );
  }
}

new Viewer().start();
