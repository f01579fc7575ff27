// Turning wire values into display text: times, durations, bodies.

// The collector's ISO 8601 parser (_timefmt.py), mirrored so that sorting and durations agree
// with the server: a time without an offset is UTC (Date.parse would call it local time), and
// fractions keep their microseconds.
const ISO =
  /^(\d{4})-(\d\d)-(\d\d)(?:[Tt ](\d\d):(\d\d)(?::(\d\d)(?:[.,](\d{1,9}))?)?)?\s*(?:([Zz])|([+-])(\d\d):?(\d\d))?$/;

/** Milliseconds since the epoch (with a fraction), or null when not an ISO 8601 time. */
export function parseTime(value) {
  if (typeof value !== "string") return null;
  const m = ISO.exec(value.trim());
  if (!m) return null;
  let ms = Date.UTC(+m[1], +m[2] - 1, +m[3], +(m[4] || 0), +(m[5] || 0), +(m[6] || 0));
  if (m[7]) ms += Number("0." + m[7]) * 1000;
  if (m[9]) {
    const offset = (+m[10] * 60 + +m[11]) * 60000;
    ms += m[9] === "+" ? -offset : offset;
  }
  return Number.isNaN(ms) ? null : ms;
}

const pad = (n, width = 2) => String(n).padStart(width, "0");

/** "2024-02-06 05:45:42.914" in the browser's time zone, or the raw value if unparseable. */
export function formatTime(value) {
  const ms = parseTime(value);
  if (ms === null) return value === undefined || value === null ? "" : String(value);
  const d = new Date(ms);
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.` +
    pad(d.getMilliseconds(), 3)
  );
}

/** response.time - request.time in ms, or null when either is missing. */
export function durationMs(event) {
  const start = parseTime(event.request?.time);
  const end = parseTime(event.response?.time);
  return start === null || end === null ? null : end - start;
}

export function formatDuration(ms) {
  if (ms === null) return "";
  return `${ms.toFixed(Math.abs(ms) < 10 ? 1 : 0)} ms`;
}

/** A scalar for a table cell; objects as compact JSON. */
export function cellText(value) {
  if (value === undefined || value === null) return "";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

export const prettyJSON = (value) => JSON.stringify(value, null, 2);

// Control characters other than tab, newlines and form feed: decoded bytes containing them are
// binary data that merely happens to be valid UTF-8.
const CONTROL = /[\u0000-\u0008\u000B\u000E-\u001F\u007F]/;
const utf8 = new TextDecoder("utf-8", { fatal: true });

function decodeBase64(text) {
  const binary = atob(text.replace(/\s+/g, ""));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** UTF-8 text of bytes, or null. A body cut at max_body_size may end inside a character, so
 * up to 3 trailing bytes may be dropped. */
function decodeText(bytes) {
  for (let cut = 0; cut <= Math.min(3, bytes.length); cut++) {
    try {
      const text = utf8.decode(bytes.subarray(0, bytes.length - cut));
      return CONTROL.test(text) ? null : text;
    } catch {
      // not UTF-8 at this length: try without one more trailing byte
    }
  }
  return null;
}

/** What to show for a request or response body: {kind, label, text}.
 * kind: "none" | "json" | "text" | "binary"; text is what goes in the <pre>. */
export function describeBody(section) {
  if (!section || section.body === undefined || section.body === null) {
    return { kind: "none", label: "no body", text: "" };
  }
  const body = section.body;
  if (section.transfer_encoding !== "base64") {
    return { kind: "json", label: "JSON", text: prettyJSON(body) };
  }
  if (typeof body !== "string") {
    return {
      kind: "json",
      label: "JSON (marked base64, but not a string)",
      text: prettyJSON(body),
    };
  }
  let bytes;
  try {
    bytes = decodeBase64(body);
  } catch {
    return { kind: "text", label: "invalid base64, shown as sent", text: body };
  }
  const text = decodeText(bytes);
  if (text === null) {
    return { kind: "binary", label: `binary, ${bytes.length} bytes`, text: hexPreview(bytes) };
  }
  const trimmed = text.trimStart();
  if (trimmed.startsWith("{") || trimmed.startsWith("[")) {
    try {
      return {
        kind: "json",
        label: `JSON (decoded from base64, ${bytes.length} bytes)`,
        text: prettyJSON(JSON.parse(text)),
      };
    } catch {
      // not JSON after all (a truncated body, say): shown as the text it is
    }
  }
  return { kind: "text", label: `text (decoded from base64, ${bytes.length} bytes)`, text };
}

/** The first bytes as a hex dump, so a binary body can still be recognised (PNG, gzip...). */
function hexPreview(bytes, limit = 256) {
  const lines = [];
  for (let offset = 0; offset < Math.min(bytes.length, limit); offset += 16) {
    const row = Array.from(bytes.subarray(offset, Math.min(offset + 16, limit)));
    const hex = row.map((b) => pad(b.toString(16))).join(" ");
    const ascii = row.map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : ".")).join("");
    lines.push(`${pad(offset.toString(16), 6)}  ${hex.padEnd(47)}  ${ascii}`);
  }
  if (bytes.length > limit) lines.push(`... ${bytes.length - limit} more bytes`);
  return lines.join("\n");
}
