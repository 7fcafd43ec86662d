// The session page's history (docs/client.md, "History"): the saved revisions and the recent
// changes (who, when, what) from the `revisions` state, a read-only view of one revision
// (`revision`, drawn with the checklist's own view), and "Restore this revision" for owners and
// editors (`restore`, through LiveSession.restoreRevision: one new change every member sees).
// Folded away until asked for; while open, it follows the session (a new version, a save).

import { ChecklistView, renderValue } from "./checklist-view.js";
import { otherFields } from "./checklist.js";
import { $, errorText, h, notify, show } from "./ui.js";

const PAGE = 20; // revisions and changes asked for at a time
const REFRESH_AFTER = 400; // ms of quiet after a change before the open history is read again

const VERBS = { add: "added", remove: "removed", replace: "set", move: "moved", copy: "copied" };

/**
 * A JSON Pointer as words: "/items/2/done" -> "item 3’s done", "/budget/total" -> "budget/total",
 * "" -> "the whole document".
 */
export function pathText(path) {
  if (path === "") return "the whole document";
  const item = /^\/items\/(\d+)(?:\/(.+))?$/.exec(path);
  if (item) return item[2] ? `item ${Number(item[1]) + 1}’s ${item[2]}` : `item ${Number(item[1]) + 1}`;
  if (path === "/items/-") return "the end of the list";
  return path.slice(1).split("/").map((t) => t.replace(/~1/g, "/").replace(/~0/g, "~")).join("/");
}

// A value preview (JSON text, perhaps cut: then it ends with "…") as words: “text” for a string
// or an item's text, else the JSON as it came.
export function valueText(preview) {
  let value;
  try {
    value = JSON.parse(preview);
  } catch {
    // Cut: the string, or the item's text, up to where it was cut (or whole, when it closed).
    const found = /^(?:"|\{.*?"text":")((?:[^"\\]|\\.)*)(")?/.exec(preview);
    if (!found) return preview;
    const closed = found[2] !== undefined;
    const body = closed ? found[1] : found[1].replace(/…$/, "").replace(/\\$/, "");
    try {
      const text = JSON.parse(`"${body}"`);
      return closed ? `“${text}”` : `“${text}…”`;
    } catch {
      return preview;
    }
  }
  if (typeof value === "string") return `“${value}”`;
  if (value && typeof value === "object" && typeof value.text === "string") return `“${value.text}”`;
  return preview;
}

/** One summarised operation as a phrase, or null for a `test` (a check, not a change). */
export function describeOp(op) {
  const { op: name, path, from, value } = op;
  if (name === "test") return null;
  const item = /^\/items\/(\d+)\/(done|text)$/.exec(path);
  if (name === "replace" && item && item[2] === "done" && (value === "true" || value === "false")) {
    return `${value === "true" ? "ticked" : "unticked"} item ${Number(item[1]) + 1}`;
  }
  if (name === "replace" && item && value !== undefined) return `changed item ${Number(item[1]) + 1} to ${valueText(value)}`;
  if (name === "add" && /^\/items\/(\d+|-)$/.test(path) && value !== undefined) return `added ${valueText(value)}`;
  if (name === "move" || name === "copy") return `${VERBS[name]} ${pathText(from ?? "")} to ${pathText(path)}`;
  const verb = VERBS[name] ?? name;
  if (value === undefined || name === "remove") return `${verb} ${pathText(path)}`;
  return name === "add" ? `${verb} ${pathText(path)}: ${valueText(value)}` : `${verb} ${pathText(path)} to ${valueText(value)}`;
}

/** What a change did, in one line (its summarised operations, and how many more it had). */
export function describeChange(change) {
  if (change.restored !== undefined) return `restored revision ${change.restored}`;
  const phrases = change.ops.map(describeOp).filter(Boolean);
  const rest = change.op_count - change.ops.length;
  if (rest > 0) phrases.push(`${rest} more operation${rest === 1 ? "" : "s"}`);
  return phrases.length ? phrases.join(", ") : "checked the list (no change)";
}

/** A timestamp as the reader's local date and time. */
export function whenText(iso) {
  return new Date(iso).toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

export class HistoryPanel {
  /** `live` (LiveSession) makes the restore; `client` asks for the history; `me()` is the user id. */
  constructor({ live, client, me }) {
    Object.assign(this, { live, client, me });
    this.canEdit = false;
    this.opened = false;
    this.viewing = null; // the revision shown ({number, data, ...}), or null
    this.loadedVersion = null;
    this.refreshTimer = null;
    this.pages = { revisions: [], changes: [] };
    this.more = { revisions: false, changes: false };
    this.items = new ChecklistView({ list: $("#revision-items"), empty: $("#revision-view-empty"), change: () => null, idPrefix: "revision-done-" });
    $("#history-toggle").addEventListener("click", () => (this.opened ? this.close() : this.open()));
    $("#revisions-more").addEventListener("click", () => this.load({ older: "revisions" }));
    $("#changes-more").addEventListener("click", () => this.load({ older: "changes" }));
    $("#revision-close").addEventListener("click", () => this.closeView());
    $("#restore").addEventListener("click", () => this.confirmRestore());
    $("#restore-no").addEventListener("click", () => this.cancelRestore());
    $("#restore-yes").addEventListener("click", () => this.restore());
    // While open, follow the session: a change or a save brings new entries.
    live.on("document", () => this.opened && live.doc && live.doc.version !== this.loadedVersion && this.soon());
    live.on("saved", () => this.opened && this.soon());
  }

  /** Owners and editors may restore; follows the role (a role change pushed to the page). */
  setEditable(canEdit) {
    this.canEdit = canEdit;
    show($("#restore"), canEdit && this.viewing !== null && $("#restore-confirm").hidden);
    if (!canEdit) this.cancelRestore(false);
  }

  open() {
    this.opened = true;
    const toggle = $("#history-toggle");
    toggle.setAttribute("aria-expanded", "true");
    toggle.textContent = "Hide history";
    show($("#history-body"));
    return this.load();
  }

  close() {
    this.opened = false;
    clearTimeout(this.refreshTimer);
    const toggle = $("#history-toggle");
    toggle.setAttribute("aria-expanded", "false");
    toggle.textContent = "Show history";
    show($("#history-body"), false);
  }

  soon() {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => this.opened && this.load(), REFRESH_AFTER);
  }

  /** Read the newest page again, or (`older`) the next older page of one list. */
  async load({ older = null } = {}) {
    const status = $("#history-status");
    const request = { limit: PAGE };
    if (older === "revisions") request.before = this.pages.revisions.at(-1)?.number;
    if (older === "changes") request.changes_before = this.pages.changes.at(-1)?.version;
    status.textContent = "Loading the history…";
    let page;
    try {
      page = await this.client.request("revisions", request);
    } catch (err) {
      status.textContent = "";
      notify(errorText("The history could not be read", err));
      return;
    }
    status.textContent = "";
    if (older) {
      this.pages[older] = this.pages[older].concat(page[older]);
      this.more[older] = page[`more_${older}`];
    } else {
      this.loadedVersion = page.version;
      this.pages = { revisions: page.revisions, changes: page.changes };
      this.more = { revisions: page.more_revisions, changes: page.more_changes };
    }
    this.render();
  }

  who(by) {
    if (!by) return "a deleted user";
    return by.id === this.me() ? `${by.username} (you)` : by.username;
  }

  render() {
    const { revisions, changes } = this.pages;
    $("#revision-list").replaceChildren(
      ...revisions.map((r) =>
        h(
          "li",
          { className: "history-entry", dataset: { number: String(r.number) } },
          h(
            "div",
            { className: "history-main" },
            h("span", { className: "history-what" }, `Revision ${r.number}`, r.message ? ` · “${r.message}”` : ""),
            h("span", { className: "muted small" }, `${this.who(r.by)} · `, h("time", { dateTime: r.at }, whenText(r.at)), ` · version ${r.version}`),
          ),
          h("button", { type: "button", className: "button-quiet", "aria-label": `View revision ${r.number}`, onclick: (e) => this.view(r.number, e.currentTarget) }, "View"),
        ),
      ),
    );
    // Saving is for owners and editors: a viewer is not pointed at a button they do not have.
    $("#revisions-empty").textContent = this.canEdit ? "No revision saved yet: “Save and close” below saves one." : "No revision saved yet.";
    show($("#revisions-empty"), revisions.length === 0);
    show($("#revisions-more"), this.more.revisions);
    $("#change-list").replaceChildren(
      ...changes.map((c) =>
        h(
          "li",
          { className: `history-entry${c.restored !== undefined ? " restored" : ""}`, dataset: { version: String(c.version) } },
          h(
            "div",
            { className: "history-main" },
            h("span", { className: "history-what" }, `${this.who(c.by)} ${describeChange(c)}`),
            h("span", { className: "muted small" }, h("time", { dateTime: c.at }, whenText(c.at)), ` · version ${c.version}`),
          ),
        ),
      ),
    );
    show($("#changes-empty"), changes.length === 0);
    show($("#changes-more"), this.more.changes);
  }

  /** Show revision `number` read-only (`from`: the button to give the focus back to). */
  async view(number, from = null) {
    let revision;
    try {
      revision = await this.client.request("revision", { number });
    } catch (err) {
      notify(errorText(`Revision ${number} could not be read`, err));
      return;
    }
    this.viewing = revision;
    this.returnFocus = from;
    $("#revision-view-title").textContent = `Revision ${revision.number}${revision.message ? `: “${revision.message}”` : ""}`;
    $("#revision-view-meta").textContent = `Saved by ${this.who(revision.by)} on ${whenText(revision.at)}, at version ${revision.version}. Read-only.`;
    this.items.setEditable(false);
    const data = revision.data;
    this.items.render(data);
    const others = otherFields(data); // what is not the list (an `items` that is no list included)
    show($("#revision-other"), others.length > 0);
    $("#revision-other").replaceChildren(...(others.length ? [renderValue(Object.fromEntries(others))] : []));
    this.cancelRestore(false);
    show($("#revision-view"));
    $("#revision-view-title").focus();
  }

  closeView() {
    this.viewing = null;
    this.cancelRestore(false);
    show($("#revision-view"), false);
    this.items.render({ items: [] }); // its rows go: the page keeps one control per label
    $("#revision-other").replaceChildren();
    this.returnFocus?.isConnected ? this.returnFocus.focus() : $("#history-toggle").focus();
  }

  confirmRestore() {
    if (!this.viewing) return;
    const n = this.viewing.number;
    $("#restore-question").textContent =
      `Make the session what it was in revision ${n}? Everyone in it sees the change at once. Nothing is lost: ` +
      "the current version stays in the history, and you can save it first.";
    $("#restore-yes").textContent = `Restore revision ${n}`;
    show($("#restore"), false);
    show($("#restore-confirm"));
    $("#restore-no").focus();
  }

  cancelRestore(focus = true) {
    show($("#restore-confirm"), false);
    show($("#restore"), this.canEdit && this.viewing !== null);
    if (focus) $("#restore").focus();
  }

  async restore() {
    const n = this.viewing?.number;
    if (n === undefined) return;
    const yes = $("#restore-yes");
    yes.disabled = true;
    try {
      const reply = await this.live.restoreRevision(n);
      notify(
        reply.ops.length ? `Restored revision ${n}: the session is as it was then (now version ${reply.version}).` : `The session already is as in revision ${n}.`,
        { kind: "success" },
      );
      this.closeView();
      $("#history-title").scrollIntoView({ block: "nearest" });
      await this.load();
    } catch (err) {
      if (err.code === "conflict") {
        notify(`Someone changed the session just now, so revision ${n} was not restored. Look at the list, then restore again if you still want to.`);
      } else {
        notify(errorText(`Restoring revision ${n} failed`, err));
      }
      this.cancelRestore();
    } finally {
      yes.disabled = false;
    }
  }
}
