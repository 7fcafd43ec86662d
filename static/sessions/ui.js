// Small DOM helpers shared by the pages: element builder, notices, the connection indicator,
// and readable text for errors. Nothing here knows about the protocol beyond error codes.

/** Create an element: h("button", {type: "button", onclick: fn}, "Text", child...). */
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "className") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    // Through the CSSOM, not a style attribute: the pages' Content-Security-Policy (style-src
    // 'self', django-csp in project/settings.py) refuses inline style attributes.
    else if (key === "style") Object.assign(node.style, value);
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

export const $ = (selector, root = document) => root.querySelector(selector);

export function show(node, visible = true) {
  node.hidden = !visible;
}

// --- notices ----------------------------------------------------------------------------

/**
 * Show a notice at the top of the page, in the one notice region: the newest replaces whatever
 * was there (notices never pile up). Errors use role="alert" and stay until dismissed or
 * replaced; information and success use role="status" and go after `timeout` ms. `action`
 * adds a button ({label, run}) or a link ({label, href}). Returns the notice element.
 */
export function notify(message, { kind = "error", timeout = kind === "error" ? 0 : 6000, action } = {}) {
  const region = $("#notices");
  const dismiss = () => node.remove();
  const node = h(
    "div",
    { className: `notice notice-${kind}`, role: kind === "error" ? "alert" : "status" },
    h("p", {}, message),
    action?.href ? h("a", { href: action.href, className: "notice-action" }, action.label) : null,
    action?.run
      ? h("button", { type: "button", className: "notice-action", onclick: () => (dismiss(), action.run()) }, action.label)
      : null,
    h("button", { type: "button", className: "notice-close", "aria-label": "Dismiss", onclick: dismiss }, "×"),
  );
  region.replaceChildren(node);
  if (timeout) setTimeout(dismiss, timeout);
  return node;
}

export function clearNotices() {
  $("#notices").replaceChildren();
}

// --- errors -----------------------------------------------------------------------------

const FRIENDLY = {
  permission_denied: "You are not allowed to do that in this session.",
  not_found: "That session does not exist, or you have no access to it.",
  not_joined: "The session is not open; reload the page.",
  rate_limited: "Too many changes at once; slow down a little.",
  offline: "The server could not be reached in time, so this was not sent. Try again when the connection is back.",
  offline_queue_full: "Too many changes are waiting for the connection; wait for it to come back.",
  timeout: "The server did not answer in time. Try again.",
  connection_lost: "The connection dropped before the server answered. Try again.",
  closed: "The connection is closed. Reload the page to reconnect.",
  message_too_large: "That is too large to send.",
  server_error: "The server ran into a problem. Try again in a moment.",
  unavailable: "The service is unavailable right now. Try again in a moment.",
};

/** "What failed: why", from a ProtocolError (server text when it is helpful) or any Error. */
export function errorText(what, err) {
  const code = err?.code;
  let why = FRIENDLY[code];
  if (code === "offline" && globalThis.navigator?.onLine === false) {
    why = "You are offline, so this was not sent. Check your network and try again.";
  }
  // not_found is also the answer for an unknown username (invite): the server's text says which.
  if (code === "not_found" && err?.requestState === "invite" && err?.message) why = err.message;
  if (code === "invalid_data" || code === "conflict" || (!why && err?.message)) why = err.message;
  if (code === "invalid_data" && err.errors) {
    why = Object.entries(err.errors)
      .map(([field, messages]) => `${field}: ${[].concat(messages).join(" ")}`)
      .join("; ");
  }
  return `${what}: ${why || "something went wrong."}`;
}

// --- connection indicator ---------------------------------------------------------------

// "offline" is the browser's word (no network: the user's to fix); "unreachable" means the network
// is there but the server does not answer (not the user's doing).
const LABELS = {
  idle: "Not connected",
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  unreachable: "Server unreachable, retrying",
  offline: "Offline: no network",
  closed: "Disconnected",
};
const WAITING = new Set(["reconnecting", "unreachable", "offline"]);

/**
 * Keep #connection in step with the client's status, with the time to the next attempt and a
 * "Retry now" button (#retry-now) while the client waits to reconnect.
 */
export function bindIndicator(client) {
  const node = $("#connection");
  const retry = $("#retry-now");
  const countdown = node.querySelector(".countdown");
  let ticker = null;
  const tick = () => {
    const left = client.retryAt === null ? 0 : Math.ceil((client.retryAt - Date.now()) / 1000);
    countdown.textContent = WAITING.has(client.status) && left > 0 ? ` · next try in ${left} s` : "";
  };
  const render = (status) => {
    node.dataset.status = status;
    node.querySelector(".label").textContent = LABELS[status] ?? status;
    if (retry) show(retry, WAITING.has(status));
    clearInterval(ticker);
    ticker = WAITING.has(status) ? setInterval(tick, 1000) : null;
    tick();
  };
  retry?.addEventListener("click", () => {
    client.reconnectNow();
    tick();
  });
  render(client.status);
  client.on("status", render);
  client.on("retry", tick);
}

/** Reload-free navigation that keeps history sane. */
export function go(url) {
  window.location.assign(url);
}

export function sessionUrl(id) {
  return document.body.dataset.sessionUrl.replace("00000000-0000-0000-0000-000000000000", encodeURIComponent(id));
}

export function homeUrl() {
  return document.body.dataset.homeUrl;
}

// --- flash: one message carried to the next page (in sessionStorage, never in the URL) ----

const FLASH_KEY = "sessions.flash";

export function setFlash(message) {
  sessionStorage.setItem(FLASH_KEY, message);
}

export function showFlash() {
  const message = sessionStorage.getItem(FLASH_KEY);
  sessionStorage.removeItem(FLASH_KEY);
  if (message) notify(message, { kind: "success", timeout: 10000 });
}
