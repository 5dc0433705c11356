// How the dashboard's pages talk to their server: its JSON views, and thumbnails in batches.

// A function that calls the JSON views under `base` (the dashboard's URL prefix). Every call sends the
// login cookie; a state-changing one also sends the page's CSRF token. A 401 (the login ended) sends the
// browser to the login page, which brings it back here; any other failure throws the server's message.
export function jsonApi(base) {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  return async function api(path, options = {}) {
    const init = { credentials: "same-origin", headers: { Accept: "application/json" }, ...options };
    if (init.method && init.method !== "GET") {
      init.headers = { ...init.headers, "X-CSRFToken": csrf, "Content-Type": "application/json" };
    }
    const response = await fetch(base + path, init);
    if (response.status === 401) { location.href = base + "/login?next=" + encodeURIComponent(location.pathname); }
    const body = await response.json().catch(() => ({}));
    if (!response.ok) { throw new Error((body.error && body.error.message) || response.statusText); }
    return body;
  };
}

// Several thumbnails of one exam in one request (ids "<session>.<capture>"): a browser opens only six
// connections per server, too few for a screen of thumbnails one request each. Resolves to a Map from id
// to Blob (unknown ids are left out); a refusal throws an Error whose `status` is the HTTP status.
export async function fetchThumbnails(base, examId, ids) {
  const query = ids.map((id) => "c=" + encodeURIComponent(id)).join("&");
  const response = await fetch(`${base}/exams/${examId}/thumbs?${query}`, { credentials: "same-origin" });
  if (!response.ok) { throw Object.assign(new Error(response.statusText), { status: response.status }); }
  // 8 digits giving the index's length, the JSON index [[id, media type, length], ...], the images back to
  // back. One Blob for the answer; each image is a slice of it (no copy).
  const all = await response.blob();
  const headLength = Number(await all.slice(0, 8).text());
  const index = JSON.parse(await all.slice(8, 8 + headLength).text());
  const images = new Map();
  let offset = 8 + headLength;
  for (const [id, type, length] of index) {
    images.set(id, all.slice(offset, offset + length, type));
    offset += length;
  }
  return images;
}
