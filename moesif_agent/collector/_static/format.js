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

/** How many fraction digits a wire time has: 3 for "2024-02-06T04:45:42.914Z". */
function fractionDigits(value) {
  const m = typeof value === "string" ? /[T ]\d\d:\d\d:\d\d[.,](\d+)/.exec(value) : null;
  return m ? m[1].length : 0;
}

/** A compact time for a table cell: the time of day (with milliseconds) for today, else the
 * date and time to the second. The cell's tooltip has the time as sent. */
export function formatWhen(value) {
  const ms = parseTime(value);
  if (ms === null) return value === undefined || value === null ? "" : String(value);
  const full = formatTime(value);
  return new Date(ms).toDateString() === new Date().toDateString()
    ? full.slice(11)
    : full.slice(0, 19);
}

/** response.time - request.time in ms, or null when either is missing. */
export function durationMs(event) {
  const start = parseTime(event.request?.time);
  const end = parseTime(event.response?.time);
  return start === null || end === null ? null : end - start;
}

/** A duration with the precision its times had: agents send milliseconds, so "3 ms" and
 * "<1 ms" (two times in the same millisecond), never a made-up "0.0 ms". `digits` is the
 * number of fraction digits of a second the times carried. */
export function formatDuration(ms, digits = 3) {
  if (ms === null || ms === undefined) return "";
  const decimals = Math.min(3, Math.max(0, digits - 3));
  // The smallest step the times can show: 1 ms for milliseconds, 1000 ms for whole seconds.
  const smallest = 10 ** (3 - Math.min(digits, 3 + decimals));
  if (Math.abs(ms) < smallest) return `<${smallest.toLocaleString("en-US")} ms`;
  const text = ms.toLocaleString("en-US", {
    minimumFractionDigits: decimals,
    maximumFractionDigits: decimals,
  });
  return `${text} ms`;
}

/** An event's duration as text, at the precision of its own times. */
export function eventDuration(event) {
  const digits = Math.min(
    fractionDigits(event.request?.time),
    fractionDigits(event.response?.time),
  );
  return formatDuration(durationMs(event), digits);
}

/** A percentile from the summaries (ms, a whole number when the times were milliseconds). */
export function formatMs(value) {
  if (value === null || value === undefined) return "—";
  return formatDuration(value, Number.isInteger(value) ? 3 : 6);
}

export const formatCount = (n) => (typeof n === "number" ? n.toLocaleString("en-US") : "");

/** "1 call", "2,000 calls". */
export const plural = (n, one, many = `${one}s`) => `${formatCount(n)} ${n === 1 ? one : many}`;

/** 0.0833 -> "8.3%"; 0 -> "0%". */
export function formatRate(rate) {
  if (!rate) return "0%";
  const percent = rate * 100;
  return `${percent < 0.1 ? "<0.1" : percent.toFixed(1)}%`;
}

const URI = /^([a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^/?#]*)?(.*)$/;

/** "https://api.example.com/items/1?x=2" -> {host: "https://api.example.com",
 * path: "/items/1?x=2"}: rows show the path, the host is shown once or on hover. */
export function splitUri(uri) {
  const m = URI.exec(typeof uri === "string" ? uri : "");
  return { host: m?.[1] || "", path: m?.[2] || "/" };
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

/** What to show for a request or response body: {kind, label, text, raw}.
 * kind: "none" | "json" | "text" | "binary"; text is what goes in the <pre>, raw the body as
 * it was sent (decoded from base64 when it is text), for replaying it. */
export function describeBody(section) {
  if (!section || section.body === undefined || section.body === null) {
    return { kind: "none", label: "no body", text: "", raw: "" };
  }
  const body = section.body;
  if (section.transfer_encoding !== "base64" || typeof body !== "string") {
    const label =
      section.transfer_encoding === "base64" ? "JSON (marked base64, but not a string)" : "JSON";
    return { kind: "json", label, text: prettyJSON(body), raw: JSON.stringify(body) };
  }
  let bytes;
  try {
    bytes = decodeBase64(body);
  } catch {
    return { kind: "text", label: "invalid base64, shown as sent", text: body, raw: body };
  }
  const text = decodeText(bytes);
  if (text === null) {
    const label = `binary, ${bytes.length} bytes`;
    return { kind: "binary", label, text: hexPreview(bytes), raw: body };
  }
  const trimmed = text.trimStart();
  if (trimmed.startsWith("{") || trimmed.startsWith("[")) {
    try {
      return {
        kind: "json",
        label: `JSON (decoded from base64, ${bytes.length} bytes)`,
        text: prettyJSON(JSON.parse(text)),
        raw: text,
      };
    } catch {
      // not JSON after all (a truncated body, say): shown as the text it is
    }
  }
  const label = `text (decoded from base64, ${bytes.length} bytes)`;
  return { kind: "text", label, text, raw: text };
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
