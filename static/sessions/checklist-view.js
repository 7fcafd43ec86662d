// The checklist on the session page: renders the entries of any document (keyed, so a remote
// change never steals the focus or the text being typed), turns the user's actions into intents,
// and shows, on the item itself, when someone else changed the text being edited: the user picks
// theirs or keeps their own, nothing is overwritten silently.

import {
  EditConflict,
  addEntry,
  editItem,
  editText,
  entriesOf,
  moveItem,
  moveText,
  removeItem,
  removeText,
  setDone,
} from "./checklist.js";
import { h, notify } from "./ui.js";

export class ChecklistView {
  /**
   * `change(intent, what)` sends an intent (and returns its promise); `what` names it in an error
   * notice. `whoChanged()` names the author of the latest change made elsewhere. `idPrefix`
   * starts the ids of the rows' checkboxes (a second list on the page needs its own).
   */
  constructor({ list, empty, change, whoChanged = () => "Someone", idPrefix = "done-" }) {
    this.idPrefix = idPrefix;
    this.list = list;
    this.empty = empty;
    this.change = change;
    this.whoChanged = whoChanged;
    this.editable = false;
    this.data = null;
    this.rows = new Map(); // entry key -> <li>
    list.addEventListener("change", (event) => this.changed(event));
    list.addEventListener("keydown", (event) => this.keydown(event));
    list.addEventListener("click", (event) => this.clicked(event));
  }

  add(text) {
    this.send(addEntry(this.data, text), "Adding the item");
  }

  // Other failures are the page's to report (change() shows a notice); a clash is shown here.
  send(intent, what) {
    return this.change(intent, what)?.catch?.((err) => {
      if (err instanceof EditConflict) this.showConflict(err);
    });
  }

  setEditable(editable) {
    this.editable = editable;
    this.list.classList.toggle("read-only", !editable);
  }

  render(data) {
    this.data = data;
    const entries = entriesOf(data);
    const focused = document.activeElement;
    const seen = new Set();
    entries.forEach((entry, index) => {
      seen.add(entry.key);
      const row = this.rows.get(entry.key) ?? this.createRow(entry);
      this.updateRow(row, entry, index, entries.length);
      if (this.list.children[index] !== row) this.list.insertBefore(row, this.list.children[index] ?? null);
    });
    for (const [key, row] of this.rows) {
      if (!seen.has(key)) {
        row.remove();
        this.rows.delete(key);
      }
    }
    // Moving a row takes the focus away from what is inside it: give it back.
    if (focused && focused !== document.activeElement && this.list.contains(focused)) focused.focus();
    this.empty.hidden = entries.length > 0;
    return entries;
  }

  createRow(entry) {
    const dataset = { key: entry.key, kind: entry.kind };
    let row;
    if (entry.kind === "other") {
      row = h("li", { className: "item other", dataset }, h("span", { className: "item-bullet", "aria-hidden": "true" }, "•"), h("span", { className: "item-value" }));
    } else {
      const lead =
        entry.kind === "item"
          ? h("input", { type: "checkbox", className: "item-done", id: `${this.idPrefix}${entry.id}` })
          : h("span", { className: "item-bullet", "aria-hidden": "true" }, "•");
      row = h(
        "li",
        { className: `item ${entry.kind}`, dataset },
        lead,
        // A one-line textarea that grows with its text (field-sizing), so long items wrap on phones.
        h("textarea", { className: "item-text", rows: 1, maxLength: 500, autocomplete: "off", spellcheck: true }),
        h(
          "span",
          { className: "item-actions" },
          h("button", { type: "button", className: "icon-button", dataset: { action: "up" } }, "↑"),
          h("button", { type: "button", className: "icon-button", dataset: { action: "down" } }, "↓"),
          h("button", { type: "button", className: "icon-button danger", dataset: { action: "remove" } }, "✕"),
        ),
      );
    }
    this.rows.set(entry.key, row);
    return row;
  }

  updateRow(row, entry, index, count) {
    row.entry = entry;
    if (entry.kind === "other") {
      row.querySelector(".item-value").textContent = entry.text;
      row.setAttribute("aria-label", `Item ${index + 1} of ${count} (read-only): ${entry.text}`);
      return;
    }
    const text = entry.text;
    const label = text || "untitled item";
    const input = row.querySelector(".item-text");
    if (entry.kind === "item") {
      const done = row.querySelector(".item-done");
      done.checked = entry.done;
      done.disabled = !this.editable;
      done.setAttribute("aria-label", `Done: ${label}`);
      row.classList.toggle("done", entry.done);
    }
    // Keep what the user is typing; take the remote text otherwise. Text changed elsewhere while
    // the user types in it is not hidden: the row says who changed it and offers both versions.
    const typing = document.activeElement === input && input.value !== input.dataset.base;
    if (typing && input.dataset.base !== undefined && text !== input.dataset.base && text !== input.value) {
      this.showConflict({ key: entry.key, mine: input.value, theirs: text, from: input.dataset.base, live: true });
    }
    if (!typing) input.value = text;
    input.dataset.base = text;
    const box = row.querySelector(".item-conflict");
    // The choice is moot once their text changed again, or (while typing) both texts agree.
    if (box && !box.contains(document.activeElement) && (box.dataset.theirs !== text || (box.dataset.mode === "typing" && input.value === text))) {
      box.remove();
    }
    input.readOnly = !this.editable;
    input.setAttribute("aria-label", `Item ${index + 1} of ${count}`);
    const [up, down, remove] = row.querySelectorAll(".item-actions button");
    up.disabled = index === 0;
    down.disabled = index === count - 1;
    up.setAttribute("aria-label", `Move “${label}” up`);
    down.setAttribute("aria-label", `Move “${label}” down`);
    remove.setAttribute("aria-label", `Remove “${label}”`);
    for (const button of [up, down, remove]) button.hidden = !this.editable;
  }

  /**
   * On the item: "<who> changed this item to “theirs”" with "Use theirs" and "Keep mine". For a
   * text being typed (`live`), or an edit that was waiting to be sent (EditConflict).
   */
  showConflict({ key, mine, theirs, from, live = false }) {
    const row = this.rows.get(key) ?? [...this.rows.values()].find((r) => r.entry?.kind === "item" && r.entry.text === theirs);
    if (!row || theirs === null || theirs === undefined) {
      notify(`Someone else changed or removed an item you edited, so your text “${mine}” was not saved.`);
      return;
    }
    row.querySelector(".item-conflict")?.remove();
    const who = this.whoChanged() ?? "Someone";
    const input = row.querySelector(".item-text");
    const close = () => box.remove();
    const box = h(
      "div",
      { className: "item-conflict", role: "alert", dataset: { theirs, mode: live ? "typing" : "waiting" } },
      h(
        "p",
        {},
        live
          ? `${who} changed this item to “${theirs}” while you were typing.`
          : `${who} changed this item to “${theirs}” while your edit “${mine}” was waiting to be sent.`,
      ),
      h(
        "button",
        {
          type: "button",
          onclick: () => {
            input.value = theirs;
            input.dataset.base = theirs;
            close();
          },
        },
        "Use theirs",
      ),
      h(
        "button",
        {
          type: "button",
          className: "button-primary",
          onclick: () => {
            close();
            input.value = mine;
            this.send(this.editIntent(row.entry, mine, theirs), "Editing the item");
          },
        },
        "Keep mine",
      ),
    );
    row.append(box);
    if (!live) {
      input.value = theirs;
      input.dataset.base = theirs;
    }
  }

  editIntent(entry, text, from) {
    return entry.kind === "item" ? editItem(entry.id, text, from) : editText(entry.index, from, text);
  }

  commitText(input) {
    const row = input.closest(".item");
    const entry = row.entry;
    const text = input.value.replace(/\s+/g, " ").trim(); // one line: pasted newlines become spaces
    if (text === input.dataset.base) return;
    if (!text) {
      input.value = input.dataset.base;
      notify("An item needs some text. To delete it, use its ✕ button.", { kind: "info" });
      return;
    }
    row.querySelector(".item-conflict")?.remove();
    this.send(this.editIntent(entry, text, input.dataset.base), "Editing the item");
  }

  changed(event) {
    if (!this.editable) return;
    const target = event.target;
    const entry = target.closest(".item")?.entry;
    if (!entry) return;
    if (target.classList.contains("item-done")) this.send(setDone(entry.id, target.checked), "Ticking the item");
    // Leaving a text with an open choice (say, to press one of its buttons) is not a choice.
    if (target.classList.contains("item-text") && !target.closest(".item").querySelector(".item-conflict")) {
      this.commitText(target);
    }
  }

  keydown(event) {
    const input = event.target;
    if (!input.classList?.contains("item-text") || !this.editable) return;
    if (event.key === "Enter") {
      // Enter commits (an item is one line), as in the "New item" field.
      event.preventDefault();
      this.commitText(input);
    } else if (event.key === "Escape") {
      input.value = input.dataset.base;
    }
  }

  clicked(event) {
    const button = event.target.closest("button[data-action]");
    if (!button || !this.editable) return;
    const entry = button.closest(".item").entry;
    const action = button.dataset.action;
    const delta = action === "up" ? -1 : 1;
    if (entry.kind === "item") {
      if (action === "remove") this.send(removeItem(entry.id), "Removing the item");
      else this.send(moveItem(entry.id, delta, this.data), "Moving the item");
    } else if (action === "remove") {
      this.send(removeText(entry.index, entry.text), "Removing the item");
    } else {
      this.send(moveText(entry.index, entry.text, delta), "Moving the item");
    }
    // Keep the keyboard user on the moved item's button (an item keeps its row; a string moves to
    // the row of its new index).
    if (action !== "remove") {
      const key = entry.kind === "item" ? entry.key : `s:${Math.max(0, entry.index + delta)}`;
      requestAnimationFrame(() => this.rows.get(key)?.querySelector(`[data-action="${action}"]`)?.focus());
    }
  }
}

/** A read-only rendering of any JSON value: objects as term/description lists, arrays as lists. */
export function renderValue(value, depth = 0) {
  if (value === null || typeof value !== "object") {
    return h("span", { className: "data-scalar" }, value === null ? "null" : typeof value === "string" ? value : String(value));
  }
  if (depth > 8) return h("span", {}, "…");
  if (Array.isArray(value)) {
    if (!value.length) return h("span", { className: "muted" }, "(empty list)");
    return h("ol", {}, ...value.map((v) => h("li", {}, renderValue(v, depth + 1))));
  }
  const entries = Object.entries(value);
  if (!entries.length) return h("span", { className: "muted" }, "(empty)");
  return h("dl", {}, ...entries.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, renderValue(v, depth + 1))]));
}
