// DOM building for the viewer.
//
// Everything the viewer shows comes from captured traffic, which whoever calls the monitored
// API controls: a header or body may well be "<script>...</script>". So the page never parses
// data as HTML: elements are made with createElement and every value becomes a text node (or a
// property such as `title`). No innerHTML anywhere, and h() refuses props that would parse HTML
// or load a URL, so a later edit cannot slip one in by accident.

const FORBIDDEN_PROPS = new Set(["innerHTML", "outerHTML", "srcdoc", "src", "href", "style"]);
const SVG_NS = "http://www.w3.org/2000/svg";

/** h("td", {class: "status"}, "200") -> <td class="status">200</td>; children may be strings,
 * numbers, nodes, arrays of those, or null/undefined/false (skipped). Props starting with "on"
 * become event listeners (no inline handlers: the CSP forbids them anyway). */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (FORBIDDEN_PROPS.has(key)) throw new Error(`h(): refusing to set ${key}`);
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "value" || key === "checked" || key === "selected") el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

/** Appends children as h() does: text always as text nodes. */
export function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
  return el;
}

/** Replaces all of el's children. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** svg("rect", {x: 1, y: 2}) -> an SVG element; attributes as h() sets them (no event handler
 * attributes, no links), children as h() appends them: text stays text. */
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (FORBIDDEN_PROPS.has(key) || key.startsWith("on") || key.endsWith("href")) {
      throw new Error(`svg(): refusing to set ${key}`);
    }
    el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}
