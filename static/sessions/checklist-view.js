// The checklist on the session page: renders the items (keyed by id, so a remote change never
// steals the focus or the text being typed) and turns the user's actions into intents.

import { addItem, editItem, itemsOf, moveItem, removeItem, setDone } from "./checklist.js";
import { h, notify } from "./ui.js";

export class ChecklistView {
  /** `change(intent, what)` sends an intent; `what` names it in an error notice. */
  constructor({ list, empty, change }) {
    this.list = list;
    this.empty = empty;
    this.change = change;
    this.editable = false;
    this.rows = new Map(); // item id -> <li>
    list.addEventListener("change", (event) => this.changed(event));
    list.addEventListener("keydown", (event) => this.keydown(event));
    list.addEventListener("click", (event) => this.clicked(event));
  }

  add(text) {
    this.change(addItem(text), "Adding the item");
  }

  setEditable(editable) {
    this.editable = editable;
    this.list.classList.toggle("read-only", !editable);
  }

  render(data) {
    const items = itemsOf(data);
    const focused = document.activeElement;
    const seen = new Set();
    items.forEach((item, index) => {
      seen.add(item.id);
      const row = this.rows.get(item.id) ?? this.createRow(item.id);
      this.updateRow(row, item, index, items.length);
      if (this.list.children[index] !== row) this.list.insertBefore(row, this.list.children[index] ?? null);
    });
    for (const [id, row] of this.rows) {
      if (!seen.has(id)) {
        row.remove();
        this.rows.delete(id);
      }
    }
    // Moving a row takes the focus away from what is inside it: give it back.
    if (focused && focused !== document.activeElement && this.list.contains(focused)) focused.focus();
    this.empty.hidden = items.length > 0;
  }

  createRow(id) {
    const row = h(
      "li",
      { className: "item", dataset: { id } },
      h("input", { type: "checkbox", className: "item-done", id: `done-${id}` }),
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
    this.rows.set(id, row);
    return row;
  }

  updateRow(row, item, index, count) {
    const text = typeof item.text === "string" ? item.text : "";
    const label = text || "untitled item";
    const done = row.querySelector(".item-done");
    const input = row.querySelector(".item-text");
    done.checked = item.done === true;
    done.disabled = !this.editable;
    done.setAttribute("aria-label", `Done: ${label}`);
    // Keep what the user is typing; take the remote text otherwise.
    const typing = document.activeElement === input && input.value !== input.dataset.base;
    if (!typing) input.value = text;
    input.dataset.base = text;
    input.readOnly = !this.editable;
    input.setAttribute("aria-label", `Item ${index + 1} of ${count}`);
    row.classList.toggle("done", item.done === true);
    const [up, down, remove] = row.querySelectorAll("button");
    up.disabled = index === 0;
    down.disabled = index === count - 1;
    up.setAttribute("aria-label", `Move “${label}” up`);
    down.setAttribute("aria-label", `Move “${label}” down`);
    remove.setAttribute("aria-label", `Remove “${label}”`);
    for (const button of [up, down, remove]) button.hidden = !this.editable;
  }

  commitText(input) {
    const id = input.closest(".item").dataset.id;
    const text = input.value.replace(/\s+/g, " ").trim(); // one line: pasted newlines become spaces
    if (text === input.dataset.base) return;
    if (!text) {
      input.value = input.dataset.base;
      notify("An item needs some text. To delete it, use its ✕ button.", { kind: "info" });
      return;
    }
    this.change(editItem(id, text), "Editing the item");
  }

  changed(event) {
    if (!this.editable) return;
    const target = event.target;
    const id = target.closest(".item")?.dataset.id;
    if (!id) return;
    if (target.classList.contains("item-done")) this.change(setDone(id, target.checked), "Ticking the item");
    if (target.classList.contains("item-text")) this.commitText(target);
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
    const id = button.closest(".item").dataset.id;
    const action = button.dataset.action;
    if (action === "up") this.change(moveItem(id, -1), "Moving the item");
    if (action === "down") this.change(moveItem(id, 1), "Moving the item");
    if (action === "remove") this.change(removeItem(id), "Removing the item");
    // Keep the keyboard user on the moved item's button.
    if (action !== "remove") requestAnimationFrame(() => this.rows.get(id)?.querySelector(`[data-action="${action}"]`)?.focus());
  }
}
