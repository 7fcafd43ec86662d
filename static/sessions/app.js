// Entry point of the pages: pick the page from <body data-page>, wire what all pages share
// (connection indicator, who is signed in, sign out), and hand over to the page's module.

import { SessionClient } from "./client.js";
import { startHome } from "./home.js";
import { unsentBySession } from "./outbox.js";
import { startSession } from "./session-page.js";
import { TokenStore } from "./tokens.js";
import { $, bindIndicator, errorText, homeUrl, notify, setFlash, show, showFlash } from "./ui.js";

/** A client for this page, with the shared chrome bound to it. */
function makeClient(tokens) {
  const client = new SessionClient({ tokens });
  bindIndicator(client);
  client.on("initialised", ({ user }) => {
    const who = $("#whoami");
    who.textContent = `Signed in as ${user.username}`;
    show(who);
  });
  client.on("error", (err) => notify(errorText("The server reported a problem", err)));
  client.on("closed", ({ code, reason, byClient }) => {
    // Not for a close this page asked for, a save (which closes on purpose), or a sign-out
    // (which has its own notice).
    if (byClient || code === 4401 || document.body.dataset.saving) return;
    notify(reason, { action: { label: "Reconnect", run: () => client.connect().catch(() => {}) } });
  });
  client.on("signedout", (err) => {
    show($("#sign-out"), false);
    show($("#whoami"), false);
    notify(err.message, { action: { label: "Sign in", href: `${homeUrl()}?next=${encodeURIComponent(location.pathname)}` } });
  });
  return client;
}

function bindSignOut(tokens, getClient) {
  const button = $("#sign-out");
  button.addEventListener("click", async () => {
    button.disabled = true;
    getClient()?.close();
    let kept = 0;
    try {
      kept = [...unsentBySession(localStorage, tokens.userKey).values()].reduce((a, b) => a + b, 0);
    } catch {
      kept = 0;
    }
    const revoked = await tokens.signOut();
    let message = revoked ? "You are signed out." : "You are signed out here, but the server could not be told: it will be at your next visit, and your sign-in lapses on its own within a day.";
    // Unsent changes stay on this device (outbox.js): they go out at the next sign-in.
    if (kept) message += ` ${kept} unsent change${kept === 1 ? " is" : "s are"} kept on this device and will be sent when you sign in again and open the session.`;
    setFlash(message);
    window.location.assign(homeUrl());
  });
}

/**
 * Register the service worker (templates/sessions/sw.js) and put this page and what it loaded in
 * its cache, so that a reload while the server is down still opens the page (the first visit is
 * not yet controlled by the worker: its requests did not pass through it).
 */
async function keepForOffline() {
  const url = document.body.dataset.serviceWorkerUrl;
  if (!url || !("serviceWorker" in navigator) || !globalThis.caches) return;
  try {
    await navigator.serviceWorker.register(url);
    const cache = await caches.open("sessions-pages-v1");
    const mine = (name) => new URL(name, location.href).origin === location.origin;
    const loaded = performance
      .getEntriesByType("resource")
      .map((entry) => entry.name)
      .filter((name) => mine(name) && new URL(name).pathname.startsWith("/static/"));
    await cache.addAll([...new Set([location.pathname, ...loaded])]);
  } catch {
    // No service worker (private mode, http on another host): reloading needs the server.
  }
}

async function main() {
  window.addEventListener("load", () => keepForOffline()); // before any await: load may come first
  const tokens = new TokenStore();
  let client = null;
  const getClient = () => client;
  const newClient = () => (client = makeClient(tokens));
  bindSignOut(tokens, getClient);
  showFlash();
  // A new tab or a reload has no access token (memory only): take one with the refresh cookie,
  // so the page is signed in without asking (tokens.js).
  await tokens.restore();
  const page = document.body.dataset.page;
  if (page === "home") startHome({ tokens, newClient });
  else if (page === "session") startSession({ tokens, newClient });
}

main();
