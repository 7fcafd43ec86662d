// The pages' service worker, served at /sw.js so that its scope is the whole site. It lets a page
// be reloaded (or opened again) while the server is down: the page then shows the copy of the
// session and the unsent changes kept on this device (outbox.js), and sends them once the
// server is back. Network first, always: while the server answers, nothing comes from the
// cache. Only the pages and /static/ are cached; the API and the socket never pass through here.
const CACHE = "sessions-pages-v1";

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

function cacheable(request) {
  if (request.method !== "GET") return false;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return false;
  return url.pathname === "/" || url.pathname.startsWith("/sessions/") || url.pathname.startsWith("/static/");
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (!cacheable(request)) return;
  event.respondWith(
    fetch(request)
      .then((response) => {
        if (response.ok) {
          const copy = response.clone();
          event.waitUntil(caches.open(CACHE).then((cache) => cache.put(request, copy)));
        }
        return response;
      })
      .catch(async () => (await caches.match(request, { ignoreSearch: true })) ?? Response.error()),
  );
});
