// The read API, as the page calls it: relative URLs (the viewer may sit behind a proxy that
// mounts it under a path), JSON only, and the collector's own error message on a 4xx.

/** GET a read API path with the non-empty params; throws an Error whose message is the
 * collector's explanation (it names the bad filter) and whose status is the HTTP status. */
export async function getJSON(path, params = {}) {
  const url = new URL(path, document.baseURI);
  for (const [name, value] of Object.entries(params)) {
    if (value !== "" && value !== null && value !== undefined) url.searchParams.set(name, value);
  }
  return request(url, { headers: { Accept: "application/json" }, cache: "no-store" });
}

/** DELETE api/data: everything the collector stored. Same-origin by construction; the
 * collector refuses the request from any other origin. */
export function clearData() {
  return request(new URL("api/data", document.baseURI), {
    method: "DELETE",
    headers: { Accept: "application/json" },
  });
}

async function request(url, init) {
  let response;
  try {
    response = await fetch(url, init);
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
