// TypeScript declarations of client.js, the WebSocket client of docs/protocol.md: requests and
// their replies, pushes, error codes and close codes. Checked by tests/js/types.test.mjs, which
// compiles tests/js/types.usage.ts against this file with `tsc --noEmit` (strict), and checks
// that every export of client.js is declared here.
//
// A project that registers its own states (README, "Adding a state") declares them by
// augmenting the maps:
//
//   declare module "/static/sessions/client.js" {
//     interface Requests { whoami: { data: { greeting?: string }; reply: { text: string } } }
//   }

// --- values -------------------------------------------------------------------------------

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

/** A session id: a UUID, as a string. */
export type SessionId = string;
/** ISO 8601, UTC. */
export type Timestamp = string;
/** A request id: a string of at most 64 characters, or an integer. */
export type RequestId = string | number;

export interface User {
  id: number;
  username: string;
}

export type Role = "owner" | "editor" | "viewer";

export interface Member extends User {
  role: Role;
}

/** RFC 6902 operations (pointers are RFC 6901). */
export type PatchOperation =
  | { op: "add" | "replace" | "test"; path: string; value: JsonValue }
  | { op: "remove"; path: string }
  | { op: "move" | "copy"; from: string; path: string };

/** The `create` reply, and `join` without `since` (or when the changes are no longer kept). */
export interface Snapshot {
  id: SessionId;
  title: string;
  version: number;
  data: JsonObject;
  role: Role;
  members: Member[];
  present: User[];
}

/** One accepted patch in the change log, as `join` with `since` replays it. */
export interface Change {
  version: number;
  ops: PatchOperation[];
  by: User;
  at: Timestamp;
}

/** The `join` reply when `since` is given and every change after it is still kept. */
export interface CatchUp {
  id: SessionId;
  version: number;
  changes: Change[];
}

export interface SessionSummary {
  id: SessionId;
  title: string;
  role: Role;
  version: number;
  updated_at: Timestamp;
}

/** An operation of a change as the history summarises it: strings cut to 100 characters (`…`). */
export interface OpSummary {
  op: string;
  path: string;
  from?: string;
  /** The JSON text of the operation's value, cut to 40 characters. */
  value?: string;
}

/** A saved revision in the history (`revisions`): `size` is bytes of its document's JSON. */
export interface RevisionSummary {
  number: number;
  version: number;
  message: string;
  size: number;
  /** Null when the author's account was deleted. */
  by: User | null;
  at: Timestamp;
}

/** A kept change in the history: its first 5 operations summarised, `op_count` in all. */
export interface ChangeSummary {
  version: number;
  by: User | null;
  at: Timestamp;
  op_count: number;
  ops: OpSummary[];
  /** The revision this change restored (`restore`). */
  restored?: number;
}

/** The `revisions` reply: at most `limit` of each, newest first; `more_*`: older ones remain. */
export interface HistoryPage {
  session: SessionId;
  version: number;
  revisions: RevisionSummary[];
  more_revisions: boolean;
  changes: ChangeSummary[];
  more_changes: boolean;
}

/** The `revision` reply: one revision with its document. */
export interface RevisionView extends RevisionSummary {
  session: SessionId;
  data: JsonObject;
}

type Empty = Record<string, never>;

// --- requests (protocol.md §4) ------------------------------------------------------------

/** Each state's request `data` and reply `data`. Open for augmentation (states a project adds). */
export interface Requests {
  ping: { data: Empty; reply: { server_time: Timestamp } };
  authenticate: { data: { token: string }; reply: { token_expires_at: Timestamp } };
  create: { data: { title: string; data?: JsonObject }; reply: Snapshot };
  list: { data: Empty; reply: { sessions: SessionSummary[] } };
  join: { data: { session: SessionId; since?: number }; reply: Snapshot | CatchUp };
  /**
   * `version`: the one the patch was made on; an older one is rebased on the changes since
   * (`rebased`, with the operations as applied). `key`: an idempotency key; a patch sent again
   * with it is not applied twice (`duplicate`, with that change's version and operations).
   */
  patch: { data: { version: number; ops: PatchOperation[]; key?: string }; reply: { version: number; rebased?: true; duplicate?: true; ops?: PatchOperation[] } };
  presence: { data: Empty; reply: { present: User[] } };
  /** Owner only; on an existing member, changes the role. */
  invite: { data: { username: string; role: "editor" | "viewer" }; reply: { members: Member[] } };
  /** The users sharing a session with the caller whose username starts with `prefix`: at most 20. */
  contacts: { data: { prefix?: string }; reply: { users: User[] } };
  /** Owner only: the member leaves the session (`session_removed` to them, `members` to the rest). */
  remove: { data: { username: string }; reply: { members: Member[] } };
  /** Owner only: `session_renamed` to every member. */
  rename: { data: { title: string }; reply: { id: SessionId; title: string } };
  /** Owner only: deletes the joined session (`session_removed` "deleted" to every member); this connection leaves it. */
  delete: { data: Empty; reply: { id: SessionId } };
  leave: { data: Empty; reply: Empty };
  /** `{}` when no session is joined; then the server closes with 1000. */
  save: { data: { message?: string }; reply: { revision: number; version: number } | Empty };
  /** Any member: older pages with `before` (a revision number) and `changes_before` (a version). */
  revisions: { data: { before?: number; changes_before?: number; limit?: number }; reply: HistoryPage };
  /** Any member: one revision's document. */
  revision: { data: { number: number }; reply: RevisionView };
  /**
   * Owner or editor: the document becomes revision `number`'s as one new change on `version`
   * (`conflict` when it is not the current one). `ops` take a copy at `version` to the new one;
   * none (and the same version) when the document already was that.
   */
  restore: { data: { number: number; version: number }; reply: { version: number; revision: number; ops: PatchOperation[] } };
}

export type RequestState = keyof Requests;
export type RequestData<S extends RequestState> = Requests[S]["data"];
export type Reply<S extends RequestState> = Requests[S]["reply"];

/** The frame a request goes out as. */
export interface RequestFrame<S extends RequestState = RequestState> {
  state: S;
  data: RequestData<S>;
  id?: RequestId;
}

// --- pushes -------------------------------------------------------------------------------

/** Server-initiated frames (no `id`), by state. Open for augmentation. */
export interface Pushes {
  /** `restored`: the change is a `restore` of that revision. */
  patched: { session: SessionId; version: number; ops: PatchOperation[]; by: User; restored?: number };
  presence: { session: SessionId; present: User[]; joined?: User; left?: User };
  saved: { session: SessionId; revision: number; version: number; by: User };
  token_expiring: { token_expires_at: Timestamp };
  /** To the user's open connections: invited (or a session they created, to their other tabs). */
  session_added: { session: SessionId; title: string; role: Role; version: number; updated_at: Timestamp; by: User | null };
  /** To the member's open connections; a joined connection's next patch is checked with it. */
  role_changed: { session: SessionId; role: Role; by: User | null };
  /** To the member's open connections; a joined one has left the session. */
  session_removed: { session: SessionId; reason: "removed" | "deleted"; by: User | null };
  /** To every member's open connections but the one that renamed. */
  session_renamed: { session: SessionId; title: string; by: User | null };
  /** To the session's other connections after any membership change. */
  members: { session: SessionId; members: Member[] };
}

// --- errors (protocol.md §6) ----------------------------------------------------------------

export type ServerErrorCode =
  | "not_authenticated"
  | "auth_timeout"
  | "token_expired"
  | "invalid_json"
  | "invalid_message"
  | "unsupported_frame"
  | "message_too_large"
  | "unknown_state"
  | "invalid_data"
  | "not_found"
  | "permission_denied"
  | "not_joined"
  | "conflict"
  | "patch_too_costly"
  | "quota_exceeded"
  | "rate_limited"
  | "too_many_connections"
  | "server_error"
  | "unavailable";

/** Failures the client reports itself (never sent by the server). */
export type ClientErrorCode = "timeout" | "connection_lost" | "offline" | "offline_queue_full" | "closed" | "message_too_large";

export type ErrorCode = ServerErrorCode | ClientErrorCode;

/** An error frame as the server sends it. */
export interface ErrorFrame {
  state: "error";
  code: ServerErrorCode;
  error: string;
  id?: RequestId;
  request_state?: string;
  errors?: Record<string, string[]>;
  data?: JsonObject;
}

/** An error frame turned into an Error, or a client-side failure with a protocol-like code. */
export class ProtocolError extends Error {
  constructor(
    code: ErrorCode,
    message?: string,
    details?: { data?: JsonObject; errors?: Record<string, string[]>; requestState?: string },
  );
  name: "ProtocolError";
  code: ErrorCode;
  /** Machine-readable details (a conflict carries the current `version`). */
  data?: JsonObject;
  /** Field errors of `invalid_data`. */
  errors?: Record<string, string[]>;
  requestState?: string;
}

// --- close codes (protocol.md §6) -----------------------------------------------------------

export const CLOSE_NORMAL: 1000;
export const CLOSE_GOING_AWAY: 1001;
export const CLOSE_ABNORMAL: 1006;
export const CLOSE_TOO_BIG: 1009;
export const CLOSE_SERVER_ERROR: 1011;
/** The server process is draining (a restart): the client reconnects within about a second. */
export const CLOSE_SERVICE_RESTART: 1012;
export const CLOSE_UNAUTHENTICATED: 4401;
export const CLOSE_AUTH_TIMEOUT: 4408;
export const CLOSE_MESSAGE_TOO_LARGE: 4413;
export const CLOSE_RATE_LIMITED: 4429;
export const CLOSE_UNAVAILABLE: 4503;
/** The client's own code for a socket it gives up on (heartbeat lost); it reconnects. */
export const CLOSE_CLIENT_TIMEOUT: 4000;

export type CloseCode = 1000 | 1001 | 1006 | 1009 | 1011 | 1012 | 4000 | 4008 | 4401 | 4408 | 4413 | 4429 | 4503;

// --- the client ---------------------------------------------------------------------------

export const SOCKET_PATH: "/api/v1/socket";

/** ws[s]://<this host>/api/v1/socket, from the page's own location. */
export function defaultSocketUrl(location?: { protocol: string; host: string }): string;

/**
 * `offline`: the browser has no network. `unreachable`: it has, but the server does not answer
 * (after two failed attempts in a row). `closed`: for good (1000, 1009, 4413, signed out).
 */
export type Status = "idle" | "connecting" | "connected" | "reconnecting" | "unreachable" | "offline" | "closed";

export interface RetryDetail {
  /** When the next attempt is due (ms since the epoch), or null if none is scheduled. */
  retryAt: number | null;
  /** Failed attempts in a row. */
  attempt: number;
  delay?: number;
}

/** What the client needs of a token store (tokens.js's TokenStore has it). */
export interface TokenSource {
  readonly access: string | null;
  accessExpired(skewMs?: number): boolean;
  /** The new access token; rejects (SignedOutError) when the refresh token is refused. */
  refresh(): Promise<string>;
  /**
   * Optional: "signedout" when the sign-in ended elsewhere (TokenStore: another tab signed out, or
   * signed in as another user); the client then signs out with that error. Returns an unsubscribe.
   */
  on?(name: "signedout", handler: (err: Error & { reason: string | null }) => void): () => void;
}

export interface Timers {
  set(fn: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

/** The part of the WebSocket API the client uses. */
export interface SocketLike {
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

export interface SessionClientOptions {
  tokens: TokenSource;
  url?: string;
  WebSocket?: new (url: string) => SocketLike;
  timers?: Timers;
  random?: () => number;
  isOnline?: () => boolean;
  /** Fires "online" / "offline" (the window), or null. */
  network?: EventTarget | null;
  now?: () => number;
  /** ms; default 10000. */
  requestTimeout?: number;
  /** Requests waiting for the connection; default 100. */
  queueLimit?: number;
  /** ms a request waits for the connection; default 30000. */
  queueTimeout?: number;
  /** ms; default 25000; 0 turns the heartbeat off. */
  heartbeatInterval?: number;
  /** Failed attempts before the status says "unreachable"; default 2. */
  unreachableAfter?: number;
  /** Default 65536 (SESSIONS_MAX_MESSAGE_BYTES). */
  maxMessageBytes?: number;
}

export interface RequestOptions {
  timeout?: number;
  queueTimeout?: number;
}

export type EndReason = "deactivated" | "password_changed" | "logged_out" | "disconnected";

/** What the user is told, by `EndReason`, when the sign-in cannot be renewed after such an end. */
export const END_REASONS: Record<EndReason, string>;

/** Every event of `on()`: the pushes, and the client's own. */
export interface ClientEvents extends Pushes {
  status: Status;
  connecting: RetryDetail | undefined;
  connected: undefined;
  reconnecting: RetryDetail;
  unreachable: RetryDetail;
  offline: RetryDetail;
  closed: { code: number; reason: string; byClient: boolean };
  initialised: { user: User; protocol: 1; token_expires_at: Timestamp };
  disconnected: { code: number };
  /** Signed out for good; `reason` is the server's data.reason when it ended the socket first. */
  signedout: Error & { reason?: EndReason | null };
  /** The server ended the socket (`not_authenticated` with data.reason); a refresh follows. */
  ended: { reason: EndReason };
  /** An error frame without an id (rate_limited...), or a failed re-join. */
  error: ProtocolError;
  /** A reconnect attempt was scheduled. */
  retry: RetryDetail & { delay: number };
}

export class SessionClient {
  constructor(options: SessionClientOptions);
  readonly status: Status;
  readonly user: User | null;
  /** Authenticated and every beforeReady hook done. */
  readonly ready: boolean;
  readonly retryAt: number | null;

  /** Open the connection and keep it open; resolves once authenticated and ready. */
  connect(options?: { timeout?: number }): Promise<void>;
  /** Close for good (1000); pending and queued requests reject with `closed`. */
  close(): void;
  /** Send {state, data, id}; resolve with the reply's data, reject with ProtocolError. */
  request<S extends RequestState>(state: S, data?: RequestData<S>, options?: RequestOptions): Promise<Reply<S>>;
  /** Send at once on the authenticated socket, bypassing the queue (for beforeReady hooks). */
  requestNow<S extends RequestState>(state: S, data?: RequestData<S>, options?: { timeout?: number }): Promise<Reply<S>>;
  /** Resolve when ready; `Infinity` waits out any outage. */
  whenReady(timeout?: number): Promise<void>;
  beforeReady(hook: () => unknown): void;
  /** Skip the backoff wait ("Retry now", the browser's `online` event); false if an attempt is under way. */
  reconnectNow(): boolean;
  retryDetail(): RetryDetail;
  /** Subscribe; returns the function that unsubscribes. */
  on<E extends keyof ClientEvents>(name: E, handler: (payload: ClientEvents[E]) => void): () => void;
  off<E extends keyof ClientEvents>(name: E, handler: (payload: ClientEvents[E]) => void): void;
}
