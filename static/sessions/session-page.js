// The live session page: joins the session named by <body data-session-id>, renders the
// checklist, presence and members, and sends invites and the final save.

import { ChecklistView } from "./checklist-view.js";
import { LiveSession } from "./session.js";
import { $, errorText, go, h, homeUrl, notify, setFlash, show } from "./ui.js";

const ROLE_LABELS = { owner: "Owner", editor: "Editor", viewer: "Viewer (read-only)" };

export function startSession({ tokens, newClient }) {
  if (!tokens.signedIn) {
    return window.location.replace(`${homeUrl()}?next=${encodeURIComponent(location.pathname)}`);
  }
  show($("#sign-out"));
  const sessionId = document.body.dataset.sessionId;
  const client = newClient();
  const live = new LiveSession(client);

  const change = (intent, what) => {
    live.change(intent).catch((err) => notify(errorText(`${what} failed`, err)));
  };
  const view = new ChecklistView({ list: $("#items"), empty: $("#items-empty"), change });

  function renderHeader() {
    const doc = live.doc;
    $("#session-title").textContent = doc.title;
    document.title = `${doc.title} · Sessions`;
    const badge = $("#role-badge");
    badge.textContent = ROLE_LABELS[doc.role] ?? doc.role;
    badge.className = `badge badge-${doc.role}`;
    show(badge);
    view.setEditable(doc.canEdit);
    show($("#read-only-note"), !doc.canEdit);
    show($("#add-form"), doc.canEdit);
    show($("#sync-state"), doc.canEdit);
    show($("#save"), doc.canEdit);
    show($("#invite"), doc.role === "owner");
    renderMembers();
  }

  function renderPresence() {
    const me = client.user?.id;
    const present = live.doc?.present ?? [];
    $("#presence-list").replaceChildren(
      h("li", { className: "presence-label" }, present.length === 1 ? "Here now:" : `Here now (${present.length}):`),
      ...present.map((user) =>
        h(
          "li",
          { className: "avatar-chip", dataset: { userId: String(user.id) }, title: user.username },
          h("span", { className: "avatar", "aria-hidden": "true" }, user.username.slice(0, 1).toUpperCase()),
          user.id === me ? `${user.username} (you)` : user.username,
        ),
      ),
    );
  }

  function renderMembers() {
    const members = live.doc?.members ?? [];
    $("#member-list").replaceChildren(
      ...members.map((m) => h("li", {}, h("span", {}, m.username), " ", h("span", { className: `badge badge-${m.role}` }, m.role))),
    );
  }

  function renderSyncState() {
    const pending = live.intents.length;
    $("#sync-state").textContent = pending ? `Sending ${pending} change${pending > 1 ? "s" : ""}…` : "All changes saved";
  }

  live.on("document", () => {
    if (!live.doc) return;
    renderHeader(); // a snapshot after a reconnect may bring a new role
    view.render(live.view());
    renderSyncState();
  });
  live.on("presence", renderPresence);
  live.on("saved", (data) => {
    if (data.by?.id !== client.user?.id) notify(`${data.by?.username ?? "Someone"} saved revision ${data.revision}.`, { kind: "info" });
  });
  live.on("error", (err) => notify(errorText("Catching up with the latest changes failed", err)));

  $("#add-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("#new-item");
    const text = input.value.trim();
    if (!text) return input.focus();
    view.add(text);
    input.value = "";
    input.focus();
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
      notify(`${username} can now ${role === "viewer" ? "view" : "edit"} this session.`, { kind: "success" });
    } catch (err) {
      notify(errorText(`Inviting ${username} failed`, err));
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
    $("#session-title").textContent = "Session unavailable";
    show($("#checklist"), false);
    notify(errorText("This session could not be opened", err), { action: { label: "Back to my sessions", href: homeUrl() } });
  });
}
