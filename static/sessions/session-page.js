// The live session page: joins the session named by <body data-session-id>, renders the
// checklist (any document shape), presence and members, keeps unsent changes in the outbox, and
// sends invites and the final save. The session's membership is live: a role changed, a member
// added or removed, a new title, this user removed or the session deleted all show at once
// (docs/client.md, "What the pages do on each push").

import { avatarsFor } from "./avatars.js";
import { ChecklistView, renderValue } from "./checklist-view.js";
import { EditConflict, listShape, otherFields, revive } from "./checklist.js";
import { HistoryPanel } from "./history-panel.js";
import { Outbox, claimTab } from "./outbox.js";
import { ProtocolError } from "./requests.js";
import { LiveSession } from "./session.js";
import { $, errorText, go, h, homeUrl, notify, setFlash, show } from "./ui.js";

const ROLE_LABELS = { owner: "Owner", editor: "Editor", viewer: "Viewer (read-only)" };
const ROLE_NAMES = { owner: "owner", editor: "editor", viewer: "viewer" };
const byWhom = (by) => (by?.username ? `${by.username} ` : "");
const plural = (n, word, many = `${word}s`) => `${n} ${n === 1 ? word : many}`;

// localStorage can be missing or throw on access (disabled storage, some private modes).
function localStore() {
  try {
    return globalThis.localStorage ?? null;
  } catch {
    return null;
  }
}

export async function startSession({ tokens, newClient }) {
  if (!tokens.signedIn) {
    return window.location.replace(`${homeUrl()}?next=${encodeURIComponent(location.pathname)}`);
  }
  show($("#sign-out"));
  const sessionId = document.body.dataset.sessionId;
  const client = newClient();
  const storage = localStore();
  const tab = storage ? await claimTab() : null;
  const user = tokens.userKey;
  const openOutbox = storage && user ? (id) => new Outbox({ storage, user, session: id, tab }) : null;
  const live = new LiveSession(client, { openOutbox, revive });
  let presenceAt = null; // when the presence shown was last known live
  let signedOut = false; // the client signed out for good: nothing on the page can change it
  const mine = (data) => data?.session === sessionId && live.doc;

  const change = (intent, what) => {
    const promise = live.change(intent);
    promise.catch((err) => {
      if (!(err instanceof EditConflict)) notify(errorText(`${what} failed`, err));
    });
    return promise;
  };
  const view = new ChecklistView({
    list: $("#items"),
    empty: $("#items-empty"),
    change,
    whoChanged: () => live.lastRemote?.by?.username,
  });
  const history = new HistoryPanel({ live, client, me: () => client.user?.id });

  function renderHeader() {
    const doc = live.doc;
    $("#session-title").textContent = doc.title;
    document.title = `${doc.title} · Sessions`;
    const badge = $("#role-badge");
    badge.textContent = ROLE_LABELS[doc.role] ?? doc.role;
    badge.className = `badge badge-${doc.role}`;
    show(badge);
    const canEdit = doc.canEdit && !signedOut;
    const owner = doc.role === "owner" && !signedOut;
    view.setEditable(canEdit);
    show($("#read-only-note"), !canEdit);
    show($("#sync-state"), canEdit || live.pendingCount > 0);
    show($("#save"), canEdit);
    show($("#history"), !signedOut);
    history.setEditable(canEdit);
    show($("#people"));
    show($("#invite-form"), owner);
    show($("#manage"), !signedOut);
    show($("#rename-form"), owner);
    show($("#delete-session"), owner);
    show($("#delete-note"), owner);
    renderMembers();
  }

  // The document as the page shows it: the list (any shape), and what is not a list, read-only.
  function renderData(data) {
    const entries = view.render(data);
    const shape = listShape(data);
    const foreign = entries.filter((e) => e.kind === "other").length;
    const others = otherFields(data);
    // A document whose `items` is not a list cannot take an item without losing what is there.
    show($("#add-form"), live.doc.canEdit && !signedOut && shape !== "foreign");
    const note = $("#foreign-note");
    const notes = [];
    if (shape === "strings") notes.push("This list holds plain text entries: new ones are added the same way.");
    if (foreign) notes.push(`${plural(foreign, "entry", "entries")} of another kind ${foreign === 1 ? "is" : "are"} shown read-only.`);
    if (shape === "foreign") notes.push("This session's data is not a list this page can change: it is shown below, read-only.");
    note.textContent = notes.join(" ");
    show(note, notes.length > 0);
    show($("#other-data"), others.length > 0);
    $("#other-data-tree").replaceChildren(...(others.length ? [renderValue(Object.fromEntries(others))] : []));
  }

  function renderPresence() {
    const me = client.user?.id;
    const present = live.doc?.present ?? [];
    const stale = !client.ready;
    const avatars = avatarsFor(present);
    const list = $("#presence-list");
    list.classList.toggle("stale", stale);
    let label = present.length === 1 ? "Here now:" : `Here now (${present.length}):`;
    if (stale) {
      const at = presenceAt ? ` at ${presenceAt.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" })}` : "";
      label = present.length ? `Last seen here${at} (not live while disconnected):` : "Who is here is not known while disconnected.";
    }
    list.replaceChildren(
      h("li", { className: "presence-label" }, label),
      ...present.map((user) => {
        const { initials, color } = avatars.get(user.id);
        return h(
          "li",
          { className: "avatar-chip", dataset: { userId: String(user.id) }, title: stale ? `${user.username} (last seen)` : user.username },
          h("span", { className: "avatar", "aria-hidden": "true", style: { backgroundColor: color } }, initials),
          user.id === me ? `${user.username} (you)` : user.username,
        );
      }),
    );
  }

  // Every member sees who is in the session and their role; the owner also changes a role and
  // removes a member, from the member's row.
  function renderMembers() {
    const members = live.doc?.members ?? [];
    const owner = live.doc?.role === "owner" && !signedOut;
    const me = client.user?.id;
    $("#member-list").replaceChildren(
      ...members.map((m) => {
        const name = m.id === me ? `${m.username} (you)` : m.username;
        const row = h("li", { className: "member-row", dataset: { username: m.username } }, h("span", { className: "member-name" }, name), " ");
        if (!owner || m.role === "owner") {
          row.append(h("span", { className: `badge badge-${m.role}` }, ROLE_NAMES[m.role] ?? m.role));
          return row;
        }
        const select = h(
          "select",
          { "aria-label": `Role of ${m.username}`, onchange: () => changeRole(m.username, select.value, select) },
          h("option", { value: "editor", selected: m.role === "editor" }, "editor"),
          h("option", { value: "viewer", selected: m.role === "viewer" }, "viewer"),
        );
        row.append(
          select,
          " ",
          h("button", { type: "button", className: "button-quiet", onclick: (e) => removeMember(m.username, e.target) }, `Remove ${m.username}`),
        );
        return row;
      }),
    );
  }

  async function changeRole(username, role, control) {
    control.disabled = true;
    try {
      const { members } = await client.request("invite", { username, role });
      live.doc.members = members;
      notify(`${username} is now ${role === "viewer" ? "a viewer" : "an editor"}.`, { kind: "success" });
    } catch (err) {
      notify(errorText(`Changing the role of ${username} failed`, err));
    }
    renderMembers();
  }

  async function removeMember(username, control) {
    control.disabled = true;
    try {
      const { members } = await client.request("remove", { username });
      live.doc.members = members;
      notify(`${username} is no longer a member of this session.`, { kind: "success" });
    } catch (err) {
      notify(errorText(`Removing ${username} failed`, err));
    }
    renderMembers();
  }

  // The session can no longer be joined: the changes still waiting for it are dropped (from the
  // outbox too), and the list page says how many, with why.
  function goneFor(message) {
    const dropped = live.end(new ProtocolError("not_found", message));
    const lost = dropped ? ` ${dropped === 1 ? "1 change" : `${dropped} changes`} you made had not reached the server and ${dropped === 1 ? "was" : "were"} discarded.` : "";
    leaveFor(message + lost);
  }

  // This page can no longer show the session: say why on the list page, and go there.
  function leaveFor(message) {
    setFlash(message);
    client.close(); // by the client: app.js shows no "connection closed" notice for it
    go(homeUrl());
  }

  // "All changes saved" only when nothing waits; while something does, where it is.
  function renderSyncState() {
    const node = $("#sync-state");
    const n = live.pendingCount;
    let text;
    let state;
    if (n === 0) {
      state = live.doc?.cached ? "cached" : "saved";
      text = live.doc?.cached ? "Showing the copy kept on this device; connecting…" : "All changes saved";
    } else if (client.ready) {
      state = "sending";
      text = `Sending ${plural(n, "change")}…`;
    } else {
      state = "waiting";
      const until = client.status === "offline" ? "you are back online" : "the server is back";
      text = live.persisted
        ? `${plural(n, "change")} not sent yet: kept on this device, sent when ${until}.`
        : `${plural(n, "change")} not sent yet, sent when ${until}. They could not be kept on this device: keep this tab open.`;
    }
    node.textContent = text;
    node.dataset.state = state;
  }

  live.on("document", () => {
    if (!live.doc) return;
    renderHeader(); // a snapshot after a reconnect may bring a new role
    renderData(live.view());
    renderSyncState();
  });
  live.on("presence", () => {
    if (client.ready) presenceAt = new Date();
    renderPresence();
  });
  client.on("status", () => {
    if (client.ready) presenceAt = new Date();
    renderPresence();
    if (live.doc) renderSyncState();
  });
  live.on("saved", (data) => {
    if (data.by?.id !== client.user?.id) notify(`${data.by?.username ?? "Someone"} saved revision ${data.revision}.`, { kind: "info" });
  });
  // A restore is a change like any (the list follows by itself); say whose, so it is no surprise.
  live.on("patched", (data) => {
    if (data.restored === undefined) return;
    const who = data.by?.id === client.user?.id ? "You (in another tab)" : (data.by?.username ?? "Someone");
    notify(`${who} restored revision ${data.restored}: the session is as it was then.`, { kind: "info" });
  });
  // Membership pushes (protocol.md §4): about this session only; the list page has the others.
  client.on("role_changed", (data) => {
    if (!mine(data)) return;
    live.doc.role = data.role;
    renderHeader();
    renderData(live.view());
    renderSyncState();
    const what = data.role === "viewer" ? "a viewer: you can follow this session but not change it" : `an ${data.role}: you can change this session`;
    notify(`${byWhom(data.by) || "The owner "}made you ${what}.`, { kind: "info" });
  });
  client.on("members", (data) => {
    if (!mine(data)) return;
    live.doc.members = data.members;
    renderMembers();
  });
  client.on("session_renamed", (data) => {
    if (!mine(data)) return;
    live.doc.title = data.title;
    renderHeader();
  });
  client.on("session_removed", (data) => {
    if (data?.session !== sessionId) return;
    const title = live.doc?.title ? `“${live.doc.title}”` : "This session";
    if (data.reason === "deleted") goneFor(`${title} was deleted${data.by ? ` by ${data.by.username}` : ""}.`);
    else goneFor(`${byWhom(data.by) || "The owner "}removed you from ${title}: you can no longer open it.`);
  });
  // Removed, or the session deleted, while this page was disconnected (the push went to no socket):
  // the re-join after the reconnect answers not_found.
  client.on("error", (err) => {
    if (err.code !== "not_found" || !live.doc || live.doc.cached) return;
    goneFor(`You can no longer open “${live.doc.title}”: you were removed from it, or it was deleted, while you were disconnected.`);
  });
  // Signed out for good (the server ended the socket and the sign-in could not be renewed): the
  // shared chrome (app.js) says why; nothing here may look editable any more.
  client.on("signedout", (err) => {
    signedOut = true;
    if (err?.reason === "logged_out") return forgetDocument();
    $("#read-only-note").textContent = "You are signed out: this page no longer follows or changes the session.";
    if (live.doc) {
      renderHeader();
      renderData(live.view());
    } else {
      show($("#read-only-note"));
    }
  });

  // Signed out (in this browser's other tab, or elsewhere): nothing of the session stays on screen.
  function forgetDocument() {
    for (const node of document.querySelectorAll(".presence, #checklist, #other-data, #people, #manage, #save, #role-badge")) show(node, false);
    $("#items").replaceChildren();
    $("#session-title").textContent = "Signed out";
    $("#read-only-note").textContent = "You are signed out: sign in again to open this session.";
    show($("#read-only-note"));
  }

  live.on("error", (err) => notify(errorText("Catching up with the latest changes failed", err)));
  // A change kept from an earlier visit that the server refused now: say so (nobody awaits it).
  live.on("refused", ({ error }) => {
    if (error instanceof EditConflict) view.showConflict(error);
    else notify(errorText("A change you made earlier could not be saved", error));
  });

  $("#add-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("#new-item");
    const text = input.value.trim();
    if (!text) return input.focus();
    view.add(text);
    input.value = "";
    input.focus();
  });

  // The invite picker: people this user shares a session with (`contacts`), those not members here.
  let contactsAsked = null;
  async function suggestContacts() {
    const prefix = $("#invite-username").value.trim();
    if (contactsAsked === prefix || !client.ready) return;
    contactsAsked = prefix;
    try {
      const { users } = await client.request("contacts", { prefix });
      if (contactsAsked !== prefix) return; // a newer prefix was asked meanwhile
      const members = new Set((live.doc?.members ?? []).map((m) => m.username));
      $("#invite-contacts").replaceChildren(
        ...users.filter((u) => !members.has(u.username)).map((u) => h("option", { value: u.username })),
      );
    } catch {
      contactsAsked = null; // no suggestions this time; typing a username still works
    }
  }
  let contactsTimer = null;
  $("#invite-username").addEventListener("focus", suggestContacts);
  $("#invite-username").addEventListener("input", () => {
    clearTimeout(contactsTimer); // one request per pause in typing, not one per key
    contactsTimer = setTimeout(suggestContacts, 150);
  });

  $("#invite-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    const username = form.username.value.trim();
    const role = form.role.value;
    if (!username) return form.username.focus();
    try {
      const { members } = await client.request("invite", { username, role });
      live.doc.members = members;
      renderMembers();
      form.reset();
      contactsAsked = null; // the new member is no longer a suggestion
      form.username.focus();
      notify(`${username} can now ${role === "viewer" ? "view" : "edit"} this session.`, { kind: "success" });
    } catch (err) {
      notify(errorText(`Inviting ${username} failed`, err));
    }
  });

  $("#rename-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    const input = $("#rename-title");
    const title = input.value.trim();
    if (!title) return input.focus();
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const reply = await client.request("rename", { title });
      live.doc.title = reply.title;
      renderHeader();
      form.reset();
      notify(`Renamed to “${reply.title}”.`, { kind: "success" });
    } catch (err) {
      notify(errorText("Renaming failed", err));
    } finally {
      button.disabled = false;
    }
  });

  $("#leave").addEventListener("click", async (event) => {
    event.target.disabled = true;
    try {
      await client.request("leave");
    } catch {
      // Closing the socket leaves the session all the same.
    }
    leaveFor(`You left “${live.doc?.title ?? "the session"}”.`);
  });

  $("#delete-session").addEventListener("click", async (event) => {
    const title = live.doc?.title ?? "this session";
    if (!window.confirm(`Delete “${title}” for every member, with its history and saved revisions? This cannot be undone.`)) return;
    const button = event.target;
    button.disabled = true;
    try {
      await client.request("delete");
      leaveFor(`You deleted “${title}”.`);
    } catch (err) {
      notify(errorText("Deleting the session failed", err));
      button.disabled = false;
    }
  });

  $("#save-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = event.target.querySelector("button");
    const message = event.target.message.value.trim();
    button.disabled = true;
    document.body.dataset.saving = "1"; // the server closes with 1000 after a save: no notice
    try {
      // After every change still on its way, so the revision holds them.
      const reply = await live.serial(() => client.request("save", { message }));
      if (reply.revision === undefined) throw new Error("the session was not open");
      setFlash(`Saved “${live.doc.title}” as revision ${reply.revision} (version ${reply.version}).`);
      client.close();
      go(homeUrl());
    } catch (err) {
      delete document.body.dataset.saving;
      button.disabled = false;
      notify(errorText("Saving failed", err));
    }
  });

  client.connect().catch(() => {}); // failures reach the page through the join below
  live.join(sessionId).catch((err) => {
    if (err.code === "closed") return; // the client's own notice says why
    $("#session-title").textContent = "Session unavailable";
    show($("#checklist"), false);
    show($("#other-data"), false);
    notify(errorText("This session could not be opened", err), { action: { label: "Back to my sessions", href: homeUrl() } });
  });
}
