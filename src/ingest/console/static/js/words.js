// Pure helpers: an API error in words, money, dates, and the query's words marked in a hit.

const LABELS = {
  too_large: "Too large",
  unsupported_media_type: "Unsupported type",
  unreadable_document: "Cannot be read",
  empty_document: "No text in it",
  rate_limited: "Rate limited",
  unauthorized: "Not signed in",
  forbidden: "Needs an admin key",
  not_found: "Not found",
  conflict: "Not possible now",
  bad_request: "Not accepted",
  service_unavailable: "Unavailable",
  vendor_error: "Vendor error",
  internal_error: "Server error",
  network: "No answer from the server",
};

/** One line for a person: what kind of problem, the server's words, and when to retry. */
export function describeError(err) {
  const label = LABELS[err.code] || `Error ${err.status || ""}`.trim();
  let text = `${label}: ${err.message}`;
  if (err.code === "rate_limited" && err.retryAfter) {
    text += ` (wait ${err.retryAfter} s)`;
  }
  return text;
}

/** "0.000120" → "$0.000120"; money stays the exact decimal string the API sent. */
export function usd(amount) {
  return amount === null || amount === undefined ? "none" : `$${amount}`;
}

export function when(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

export function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

export function pages(start, end) {
  if (start === null || start === undefined) return "";
  return end !== null && end !== undefined && end !== start ? `pp. ${start}–${end}` : `p. ${start}`;
}

function terms(query) {
  return new Set(
    (query.toLowerCase().match(/[\p{L}\p{N}]+/gu) || []).filter((w) => w.length > 1),
  );
}

/** The text cut into pieces, each {text, mark}: mark is true for a word of the query (any case). */
export function markTerms(text, query) {
  const wanted = terms(query);
  const pieces = [];
  const re = /[\p{L}\p{N}]+/gu;
  let last = 0;
  for (const m of text.matchAll(re)) {
    if (!wanted.has(m[0].toLowerCase())) continue;
    if (m.index > last) pieces.push({ text: text.slice(last, m.index), mark: false });
    pieces.push({ text: m[0], mark: true });
    last = m.index + m[0].length;
  }
  if (last < text.length) pieces.push({ text: text.slice(last), mark: false });
  return pieces;
}
