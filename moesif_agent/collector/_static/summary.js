// What the dashboard's summary views (endpoints, traffic, people) have in common: one read
// API answer for the shared filters, fetched again by live refresh, drawn by the view; and
// sortable tables.

import { getJSON } from "./api.js";
import { h, replace } from "./dom.js";

export class SummaryView {
  /** `name`: the tab; `shared`: the FilterBar whose parameters every request carries. */
  constructor(name, shared) {
    this.name = name;
    this.shared = shared;
    this.generation = 0; // answers to older requests are dropped
    this.loaded = false;
    this.data = null;
    this.status = h("p", { class: "list-status", role: "status" });
    this.body = h("div", { class: "summary-body" });
    this.element = h(
      "section",
      { class: "view summary", id: `view-${name}`, role: "tabpanel", hidden: true },
      this.body,
      h("div", { class: "list-footer" }, this.status),
    );
  }

  /** The read API path and extra parameters of this view. */
  request() {
    throw new Error("a SummaryView defines request()");
  }

  async refresh() {
    const generation = ++this.generation;
    const [path, extra] = this.request();
    try {
      const data = await getJSON(path, { ...this.shared.params(), ...extra });
      if (generation !== this.generation) return;
      this.loaded = true;
      this.error = null;
      this.data = data;
      this.render(data);
    } catch (error) {
      if (generation !== this.generation) return;
      this.error = error.message;
      this.status.classList.add("error");
      this.status.textContent = `Error: ${error.message}`;
    }
  }

  reload() {
    return this.refresh();
  }

  setStatus(text) {
    this.status.classList.remove("error");
    this.status.textContent = text;
  }
}

/** A table whose columns sort on click (aria-sort says how). `columns`: {key, label, class,
 * value(item) -> text or nodes, sort(item) -> number or string, title(item)}. */
export class SortableTable {
  constructor(className, columns, sort, onopen) {
    this.columns = columns;
    this.sort = sort; // {key, descending}
    this.onopen = onopen;
    this.items = [];
    this.head = h("tr", {});
    this.tbody = h("tbody", {
      onclick: (e) => this.open(e.target.closest("tr")),
      onkeydown: (e) => {
        if (e.key === "Enter" || e.key === " ") {
          e.preventDefault();
          this.open(e.target.closest("tr"));
        }
      },
    });
    this.element = h(
      "div",
      { class: "list-scroller" },
      h("table", { class: `list ${className}` }, h("thead", {}, this.head), this.tbody),
    );
  }

  open(row) {
    // A click that ends a text selection is for copying, not for opening.
    if (row && row.dataset.index !== undefined && !String(window.getSelection())) {
      this.onopen(this.items[Number(row.dataset.index)], row);
    }
  }

  setItems(items) {
    const column = this.columns.find((c) => c.key === this.sort.key);
    const sign = this.sort.descending ? -1 : 1;
    const key = (item) => column.sort(item) ?? (this.sort.descending ? -Infinity : Infinity);
    this.items = [...items].sort((a, b) => {
      const x = key(a);
      const y = key(b);
      return (x < y ? -1 : x > y ? 1 : 0) * sign;
    });
    this.render();
  }

  render() {
    replace(
      this.head,
      this.columns.map((c) => {
        const sorted = c.key === this.sort.key;
        const button = h(
          "button",
          {
            type: "button",
            class: "sort",
            onclick: () => {
              const descending = sorted ? !this.sort.descending : c.descending !== false;
              this.sort = { key: c.key, descending };
              this.setItems(this.items);
            },
          },
          c.label,
          sorted ? (this.sort.descending ? " ↓" : " ↑") : "",
        );
        const order = this.sort.descending ? "descending" : "ascending";
        const sort = sorted ? order : "none";
        return h("th", { class: c.class, scope: "col", "aria-sort": sort }, button);
      }),
    );
    replace(
      this.tbody,
      this.items.map((item, index) =>
        h(
          "tr",
          { tabindex: 0, dataset: { index: String(index) } },
          this.columns.map((c) =>
            h("td", { class: c.class, title: c.title?.(item) ?? undefined }, c.value(item)),
          ),
        ),
      ),
    );
  }
}
