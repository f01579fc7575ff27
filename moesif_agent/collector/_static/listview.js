// A list of the read API (/api/<name>) as a table that pages through it ("Load more" follows
// next_cursor), with a detail pane for the row clicked. Live refresh merges what is new into
// the table, so the filters, the scroll position and the open detail all stay as they are.
// The event list takes its filters from the shared filter bar; actions and subscriptions
// have a form of their own.

import { getJSON } from "./api.js";
import { h, replace } from "./dom.js";
import { FilterForm } from "./filters.js";
import { plural } from "./format.js";

const PAGE_SIZE = 100;

/** Fills the detail pane `aside` with `content` and a close button, or hides it. */
export function showDetail(aside, content, onclose) {
  aside.hidden = !content;
  if (!content) {
    replace(aside);
    return;
  }
  const close = h(
    "button",
    { type: "button", class: "close", title: "Close (Esc)", "aria-label": "Close details" },
    "×",
  );
  close.addEventListener("click", onclose);
  replace(aside, close, h("div", { class: "detail-body" }, content));
  aside.scrollTop = 0;
}

export class ResourceView {
  constructor(def, shared = null) {
    this.def = def;
    this.shared = shared; // the FilterBar, for the event list
    this.items = [];
    this.byKey = new Map();
    this.cursor = null;
    this.selected = null; // _id of the open item; its data stays shown even if it leaves the list
    this.selectedItem = null;
    this.generation = 0; // bumped by each reload: answers to older requests are dropped
    this.busy = false;
    this.loaded = false;
    this.error = null;
    this.rejected = false; // the collector refused the filters (400): polling would only repeat it
    this.onselect = null;
    this.build();
  }

  get name() {
    return this.def.name;
  }

  // Building ----------------------------------------------------------------------------------

  build() {
    const { def } = this;
    this.filterForm = this.shared || new FilterForm(def.filters, `${def.title} filters`, {
      reload: () => this.reload(),
    });
    if (!this.shared) {
      this.filterForm.onchange = () => {
        this.onfilterschange?.();
        this.reload();
      };
    }
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
      this.shared ? null : this.filterForm.element,
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

  // Filters -----------------------------------------------------------------------------------

  get filters() {
    return this.filterForm.values;
  }

  writeFilters(values) {
    this.filterForm.write(values);
  }

  // Loading -----------------------------------------------------------------------------------

  params(extra = {}) {
    return { ...this.filterForm.params(), limit: PAGE_SIZE, ...extra };
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
        text = this.filterForm.active ? `No ${noun} match these filters.` : this.def.empty;
      else {
        const shown = plural(this.items.length, this.def.singular, noun);
        text = `${shown} shown${this.cursor ? "; more below" : ""}`;
      }
    }
    this.status.classList.toggle("error", Boolean(this.error) && message === undefined);
    this.status.textContent = text;
  }

  renderDetail() {
    const item = this.selectedItem;
    const content = item && (item.missing ? this.missing(item._id) : this.def.detail(item));
    showDetail(this.detail, content, () => this.select(null));
  }

  missing(key) {
    return h(
      "p",
      { class: "notice" },
      `No ${this.def.singular} ${key} here: it was deleted (retention, or the data was ` +
        "cleared), or the link belongs to another collector.",
    );
  }

  // Selection ---------------------------------------------------------------------------------

  select(key) {
    this.selected = key;
    this.selectedItem = key === null ? null : (this.byKey.get(key) ?? null);
    for (const row of this.tbody.rows) {
      row.classList.toggle("selected", row.dataset.key === String(key));
    }
    this.renderDetail();
    this.onselect?.(key);
  }

  /** Opens item `key` (a permalink), fetching it when it is not in the list. */
  async open(key) {
    if (this.selected === key && this.selectedItem) return;
    this.selected = key;
    let item = this.byKey.get(key);
    if (!item) {
      try {
        item = await getJSON(`api/${this.def.name}/${encodeURIComponent(key)}`);
      } catch (error) {
        item = { _id: key, missing: true, error: error.message };
      }
      if (this.selected !== key) return; // another row was opened meanwhile
    }
    this.selectedItem = item;
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
