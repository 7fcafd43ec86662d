// The home page: sign in (password, or a link by email, which lands here too), then the list of my sessions with a form to create one. The list is
// live: a session I am invited to appears, one I am removed from (or that is deleted) goes, and a
// new role or title shows, without a reload (docs/client.md, "What the pages do on each push").

import { discardUnlisted, unsentBySession } from "./outbox.js";
import { startTwoFactor } from "./two-factor.js";
import { $, errorText, go, h, notify, sessionUrl, show } from "./ui.js";

const ROLE_LABELS = { owner: "Owner", editor: "Editor", viewer: "Viewer" };

function formatWhen(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

// Changes this device still keeps for the user, by session (outbox.js): they go out when the session is opened.
function unsent(tokens) {
  try {
    return unsentBySession(globalThis.localStorage, tokens.userKey);
  } catch {
    return new Map();
  }
}

let shown = []; // the list rows on the page, as `list` returns them
let waitingShown = new Map();

function renderList(sessions, waiting = new Map()) {
  shown = sessions;
  waitingShown = waiting;
  show($("#sessions-loading"), false);
  show($("#sessions-empty"), sessions.length === 0);
  $("#session-list").replaceChildren(
    ...sessions.map((s) =>
      h(
        "li",
        { className: "session-row", dataset: { sessionId: s.id } },
        h("a", { href: sessionUrl(s.id), className: "session-link" }, s.title),
        h(
          "span",
          { className: "session-meta" },
          h("span", { className: `badge badge-${s.role}` }, ROLE_LABELS[s.role] ?? s.role),
          h("span", {}, `version ${s.version}`),
          s.updated_at ? h("time", { datetime: s.updated_at }, formatWhen(s.updated_at)) : null,
          waiting.get(s.id)
            ? h("span", { className: "unsent" }, `${waiting.get(s.id)} unsent change${waiting.get(s.id) === 1 ? "" : "s"} on this device: open to send`)
            : null,
        ),
      ),
    ),
  );
}

// Where to go after signing in: only a session page of this site (never an open redirect).
function nextUrl() {
  const next = new URLSearchParams(location.search).get("next");
  return next && /^\/sessions\/[0-9a-f-]{36}\/$/.test(next) ? next : null;
}

let afterSignIn = null; // what the sign-in form does on success (bound once)
let pending = null; // {ticket, username}: the password was right, the code is still to come

// Back to the first step (username and password), with an optional message.
function passwordStep(message = null) {
  pending = null;
  $("#otp-form").reset();
  show($("#otp-form"), false);
  show($("#sign-in-form"));
  show($("#magic-form"));
  const error = $("#sign-in-error");
  error.textContent = message ?? "";
  show(error, Boolean(message));
  $(message ? "#password" : "#username").focus();
}

function signedIn() {
  pending = null;
  $("#sign-in-form").reset();
  $("#otp-form").reset();
  show($("#otp-form"), false);
  show($("#sign-in-form"));
  show($("#sign-in"), false);
  afterSignIn();
}

function bindCodeStep(tokens) {
  const form = $("#otp-form");
  const error = $("#otp-error");
  $("#otp-restart").addEventListener("click", () => passwordStep());
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const code = form.code.value.trim();
    if (!code) {
      error.textContent = "Enter the code of your authenticator app, or a recovery code.";
      return show(error);
    }
    if (!pending) return passwordStep("Enter your password again.");
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    show(error, false);
    try {
      await tokens.signInWithCode(pending.ticket, code, pending.username);
      signedIn();
    } catch (err) {
      if (err.code === "invalid_ticket") return passwordStep(err.message);
      error.textContent = err.message;
      show(error);
      form.code.select();
    } finally {
      button.disabled = false;
    }
  });
}

// The code step for a ticket got another way than the password (an emailed link).
function codeStep(tokens, onSignedIn, result) {
  showSignIn(tokens, onSignedIn);
  pending = { ticket: result.ticket, username: result.username };
  show($("#sign-in-form"), false);
  show($("#magic-form"), false);
  show($("#otp-form"));
  $("#otp-code").focus();
}

function showSignIn(tokens, onSignedIn) {
  afterSignIn = onSignedIn;
  bindMagicForm(tokens);
  show($("#sign-in"));
  show($("#sessions"), false);
  const form = $("#sign-in-form");
  if (!form.dataset.bound) bindPasswordStep(tokens, form);
  passwordStep();
}

function bindPasswordStep(tokens, form) {
  form.dataset.bound = "1";
  bindCodeStep(tokens);
  const error = $("#sign-in-error");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const username = form.username.value.trim();
    const password = form.password.value;
    if (!username || !password) {
      error.textContent = "Enter your username and password.";
      show(error);
      return;
    }
    const button = form.querySelector("button");
    button.disabled = true;
    show(error, false);
    try {
      const result = await tokens.signIn(username, password);
      if (!result?.otpRequired) return signedIn();
      // Two-factor sign-in is on: no token yet; the code finishes it (tokens.signInWithCode).
      pending = { ticket: result.ticket, username };
      form.password.value = "";
      show(form, false);
      show($("#magic-form"), false); // the code step alone on the card
      show($("#otp-form"));
      $("#otp-code").focus();
    } catch (err) {
      error.textContent = err.message;
      show(error);
      form.password.select();
    } finally {
      button.disabled = false;
    }
  });
}

// Asking for a sign-in link by email: the same answer whether or not the account exists.
function bindMagicForm(tokens) {
  const form = $("#magic-form");
  if (form.dataset.bound) return;
  form.dataset.bound = "1";
  const status = $("#magic-status");
  const error = $("#magic-error");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const login = form.login.value.trim();
    show(status, false);
    if (!login) {
      error.textContent = "Enter your username or email.";
      show(error);
      return;
    }
    const button = form.querySelector("button");
    button.disabled = true;
    show(error, false);
    try {
      status.textContent = await tokens.requestLink(login);
      show(status);
    } catch (err) {
      error.textContent = err.message;
      show(error);
    } finally {
      button.disabled = false;
    }
  });
}

/**
 * The link's fragment, `#link=<id>&sesame=<token>` (never sent to the server), or null. It is
 * removed from the address bar and the history at once, so it is not left behind.
 */
function takeMagicLink() {
  const params = new URLSearchParams(location.hash.slice(1));
  const link = params.get("link");
  const token = params.get("sesame");
  if (!link || !token) return null;
  history.replaceState(null, "", location.pathname + location.search);
  return { link, token };
}

// The landing of a link: claim it, then the sessions; refused, say why above whatever comes next
// (the sign-in form to ask for a new link, or the sessions of whoever is already signed in here).
// With two-factor on, the link stands for the password: the sign-in form's code step follows.
async function landOnMagicLink(tokens, magic, onSignedIn, onRefused, onCode) {
  show($("#sign-in"), false);
  show($("#sessions"), false);
  show($("#magic-landing"));
  try {
    const result = await tokens.claimLink(magic.link, magic.token);
    show($("#magic-landing"), false);
    if (result?.otpRequired) return onCode(result);
    onSignedIn();
  } catch (err) {
    $("#magic-landing-title").textContent = "This link did not sign you in";
    $("#magic-landing-error").textContent = err.message;
    show($("#magic-landing-error"));
    onRefused();
  }
}

let client = null; // the client of the signed-in user (a new one after each sign-in)

function showSessions(tokens, newClient) {
  const next = nextUrl();
  if (next) return go(next);
  show($("#sessions"));
  show($("#sessions-loading"));
  show($("#sign-out"));
  startTwoFactor(tokens);
  client = newClient();
  client.on("signedout", () => showSignIn(tokens, () => showSessions(tokens, newClient)));
  const mine = client;
  client.on("connected", async () => {
    // After every (re)connect, so the list is never stale.
    try {
      const { sessions } = await mine.request("list");
      const dropped = await discardUnlisted(globalThis.localStorage, tokens.userKey, new Set(sessions.map((s) => s.id)));
      if (dropped) {
        const what = dropped === 1 ? "1 change" : `${dropped} changes`;
        notify(`${what} kept on this device for a session you can no longer open (deleted, or you were removed) could not be sent and ${dropped === 1 ? "was" : "were"} discarded.`, { kind: "info" });
      }
      renderList(sessions, unsent(tokens));
    } catch (err) {
      if (err.code !== "closed") notify(errorText("Your sessions could not be loaded", err));
    }
  });
  // Membership pushes (protocol.md §4), to every connection of this user.
  const byWhom = (by) => (by?.username ? `${by.username} ` : "");
  client.on("session_added", (data) => {
    const row = { id: data.session, title: data.title, role: data.role, version: data.version, updated_at: data.updated_at };
    const known = shown.some((s) => s.id === row.id);
    renderList([row, ...shown.filter((s) => s.id !== row.id)], waitingShown);
    if (!known && data.by && data.by.id !== mine.user?.id) {
      notify(`${byWhom(data.by)}invited you to “${data.title}” as ${data.role === "viewer" ? "a viewer" : "an editor"}.`, { kind: "info" });
    }
  });
  client.on("role_changed", (data) => {
    renderList(shown.map((s) => (s.id === data.session ? { ...s, role: data.role } : s)), waitingShown);
  });
  client.on("session_renamed", (data) => {
    renderList(shown.map((s) => (s.id === data.session ? { ...s, title: data.title } : s)), waitingShown);
  });
  client.on("session_removed", (data) => {
    const gone = shown.find((s) => s.id === data.session);
    renderList(shown.filter((s) => s.id !== data.session), waitingShown);
    if (!gone) return;
    if (data.reason === "deleted") notify(`“${gone.title}” was deleted.`, { kind: "info" });
    else notify(`${byWhom(data.by) || "The owner "}removed you from “${gone.title}”.`, { kind: "info" });
  });
  client.connect().catch((err) => {
    if (err.code === "offline") notify("The server cannot be reached yet; still trying.", { kind: "info" });
    else if (err.code !== "closed") notify(errorText("Could not connect", err));
  });
}

function bindCreate() {
  $("#create-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("#new-title");
    const title = input.value.trim();
    if (!title) {
      notify("Give the new session a title.");
      return input.focus();
    }
    const button = event.target.querySelector("button");
    button.disabled = true;
    try {
      const snapshot = await client.request("create", { title, data: { items: [] } });
      go(sessionUrl(snapshot.id));
    } catch (err) {
      notify(errorText("The session could not be created", err));
      button.disabled = false;
    }
  });
}

export function startHome({ tokens, newClient }) {
  bindCreate();
  const sessions = () => showSessions(tokens, newClient);
  const magic = takeMagicLink();
  const afterSignIn = () => {
    show($("#magic-landing"), false);
    sessions();
  };
  const signIn = () => showSignIn(tokens, afterSignIn);
  // A link opened in a tab already on this page changes only the fragment: load the page anew
  // (fragment kept), which then lands on it with nothing of the page before left running.
  window.addEventListener("hashchange", () => {
    if (new URLSearchParams(location.hash.slice(1)).has("sesame")) location.reload();
  });
  if (magic) {
    const refused = () => (tokens.signedIn ? sessions() : signIn());
    landOnMagicLink(tokens, magic, sessions, refused, (result) => codeStep(tokens, afterSignIn, result));
  }
  else if (tokens.signedIn) sessions();
  else signIn();
}
