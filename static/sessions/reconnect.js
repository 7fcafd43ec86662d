// What to do when the socket closes (protocol.md §6, close-code table) and how long to wait.
//
// Pure functions, no timers: the client asks closeAction(code) and backoffDelay(attempt, ...)
// and does the waiting itself, so both are unit-tested from Node.

export const CLOSE_NORMAL = 1000;
export const CLOSE_GOING_AWAY = 1001;
export const CLOSE_ABNORMAL = 1006;
export const CLOSE_TOO_BIG = 1009;
export const CLOSE_SERVER_ERROR = 1011;
/** The server process is draining (a deploy, a rolling restart): reconnect soon, to another one. */
export const CLOSE_SERVICE_RESTART = 1012;
export const CLOSE_UNAUTHENTICATED = 4401;
export const CLOSE_AUTH_TIMEOUT = 4408;
export const CLOSE_MESSAGE_TOO_LARGE = 4413;
export const CLOSE_RATE_LIMITED = 4429;
export const CLOSE_UNAVAILABLE = 4503;

/** The client's own close code for a socket it gives up on (heartbeat lost); reconnects. */
export const CLOSE_CLIENT_TIMEOUT = 4000;

/** Actions a close code maps to. */
export const STAY_CLOSED = "stay_closed";
export const REFRESH = "refresh"; // refresh the access token, then reconnect at once
export const BACKOFF = "backoff";
export const BACKOFF_LONG = "backoff_long";
export const RESTART = "restart"; // reconnect after a short jittered delay (1012)

const TABLE = new Map([
  [CLOSE_NORMAL, STAY_CLOSED],
  [CLOSE_TOO_BIG, STAY_CLOSED],
  [CLOSE_MESSAGE_TOO_LARGE, STAY_CLOSED],
  [CLOSE_UNAUTHENTICATED, REFRESH],
  [CLOSE_AUTH_TIMEOUT, BACKOFF],
  [CLOSE_RATE_LIMITED, BACKOFF_LONG],
  [CLOSE_UNAVAILABLE, BACKOFF],
  [CLOSE_ABNORMAL, BACKOFF],
  [CLOSE_SERVER_ERROR, BACKOFF],
  [CLOSE_SERVICE_RESTART, RESTART],
]);

/**
 * The action for a close code. Codes the table does not name (1001 when a server shuts down,
 * 1005, anything else) are treated like a lost connection: back off and reconnect. Only the codes
 * the protocol says mean "do not come back" keep the client closed.
 */
export function closeAction(code) {
  return TABLE.get(code) ?? BACKOFF;
}

/** Human text for a close that keeps the client closed (shown in a notice). */
export function closeReason(code) {
  switch (code) {
    case CLOSE_NORMAL:
      return "The server closed the connection.";
    case CLOSE_TOO_BIG:
    case CLOSE_MESSAGE_TOO_LARGE:
      return "A message was too large for the server; the connection was closed.";
    default:
      return `The connection was closed (code ${code}).`;
  }
}

// Capped at 10 s: after a server restart every page is back within 10 s (5 s on average), while
// the jitter still spreads a crowd of clients over those 10 s. "Retry now" and the browser's
// `online` event skip the wait.
export const DEFAULT_BACKOFF = Object.freeze({ base: 500, cap: 10000, min: 0 });
// 4429 means "you are over a limit": wait longer, and never come back almost at once.
export const LONG_BACKOFF = Object.freeze({ base: 5000, cap: 120000, min: 2000 });
// 1012: the process is draining and the others serve. The first attempt comes within [0.1 s, 1 s]:
// soon, but spread, so that the clients of one drained process do not all land on the others in
// the same instant; if that attempt fails (every process restarting) the wait grows as usual.
export const RESTART_BACKOFF = Object.freeze({ base: 1000, cap: 10000, min: 100 });

/**
 * Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And
 * Jitter"): a uniform random delay in [min, min(cap, base * 2^attempt)]. `attempt` counts the
 * consecutive failed tries, from 0. `random` returns a number in [0, 1).
 */
export function backoffDelay(attempt, schedule = DEFAULT_BACKOFF, random = Math.random) {
  const { base, cap, min = 0 } = schedule;
  const ceiling = Math.min(cap, base * 2 ** Math.max(0, Math.min(attempt, 30)));
  const top = Math.max(min, ceiling);
  return Math.round(min + random() * (top - min));
}

/** The schedule for an action (BACKOFF, BACKOFF_LONG or RESTART). */
export function scheduleFor(action) {
  if (action === BACKOFF_LONG) return LONG_BACKOFF;
  return action === RESTART ? RESTART_BACKOFF : DEFAULT_BACKOFF;
}
