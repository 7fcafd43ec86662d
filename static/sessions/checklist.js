// The list stored in a session's document, and the intents that change it.
//
// The page's own shape is {"items": [{"id": "<random>", "text": str, "done": bool}]}, but a session
// may hold what another client wrote: {"items": ["milk"]} (the README's example), numbers, nested
// objects, or no `items` at all. entriesOf() reads any of them: objects with a string `id` are
// checklist items, strings are plain entries (edited, moved and removed in place, never ticked),
// anything else is shown read-only. New entries take the list's shape (addEntry): strings in a
// list of strings, items everywhere else, so adding never makes a mixed array.
//
// Each change function returns an *intent* for LiveSession.change(): given the current data, the
// JSON Patch to send, or null when there is nothing left to do. Intents find their entry again
// on whatever data they are given (items by id, strings by value near their old index), guard
// the index they touch with a `test`, and carry `intent.change`, a plain description from which
// revive() rebuilds them after a reload (the outbox stores descriptions, not functions). An edit
// made on a text someone else has changed since throws EditConflict instead of overwriting it.

export const MAX_TEXT = 500;

/** A random item id (crypto.getRandomValues works on plain http too, unlike randomUUID). */
export function newItemId(crypto = globalThis.crypto) {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** An intent met a text changed by someone else since the edit was made: the user decides. */
export class EditConflict extends Error {
  constructor({ key, mine, theirs, from }) {
    super("Someone else changed this item while your edit was waiting.");
    this.name = "EditConflict";
    this.code = "edit_conflict";
    Object.assign(this, { key, mine, theirs, from });
  }
}

const isItem = (value) => value !== null && typeof value === "object" && !Array.isArray(value) && typeof value.id === "string";

/**
 * The entries of any document, in order: {kind, key, index, text, done?, value}. `kind` is
 * "item" (an object with an id; key `i:<id>`), "text" (a string; key `s:<index>`) or "other"
 * (anything else, read-only; key `o:<index>`).
 */
export function entriesOf(data) {
  const list = data && Array.isArray(data.items) ? data.items : [];
  return list.map((value, index) => {
    if (isItem(value)) {
      const text = typeof value.text === "string" ? value.text : "";
      return { kind: "item", key: `i:${value.id}`, id: value.id, index, text, done: value.done === true, value };
    }
    if (typeof value === "string") return { kind: "text", key: `s:${index}`, index, text: value, value };
    return { kind: "other", key: `o:${index}`, index, text: summarise(value), value };
  });
}

/** The checklist items of a document (objects with an id), ignoring everything else. */
export function itemsOf(data) {
  return entriesOf(data)
    .filter((entry) => entry.kind === "item")
    .map((entry) => entry.value);
}

/** How the document's list is made: "items" (ours, or empty), "strings", or "none" (no `items` array). */
export function listShape(data) {
  if (!data || !Array.isArray(data.items)) return data && "items" in data ? "foreign" : "none";
  if (data.items.length > 0 && data.items.every((value) => typeof value === "string")) return "strings";
  return "items";
}

/** The document's members other than `items` (or `items` itself when it is not a list): shown read-only. */
export function otherFields(data) {
  if (!data || typeof data !== "object") return [];
  return Object.entries(data).filter(([key, value]) => key !== "items" || !Array.isArray(value));
}

/** One line of readable text for any JSON value (numbers, nested objects...). */
export function summarise(value, depth = 0) {
  if (value === null) return "null";
  if (typeof value === "string") return value;
  if (typeof value !== "object") return String(value);
  if (depth > 1) return Array.isArray(value) ? `[${value.length} entries]` : "{…}";
  if (Array.isArray(value)) return value.map((v) => summarise(v, depth + 1)).join(", ");
  return Object.entries(value)
    .map(([k, v]) => `${k}: ${summarise(v, depth + 1)}`)
    .join(", ");
}

// --- finding an entry again -------------------------------------------------------------

function indexOfId(data, id) {
  return data && Array.isArray(data.items) ? data.items.findIndex((value) => isItem(value) && value.id === id) : -1;
}

// A string has no identity but its value: the occurrence nearest to where it was.
function indexOfText(data, text, near) {
  if (!data || !Array.isArray(data.items)) return -1;
  let best = -1;
  data.items.forEach((value, index) => {
    if (value === text && (best === -1 || Math.abs(index - near) < Math.abs(best - near))) best = index;
  });
  return best;
}

function guard(index, id) {
  return { op: "test", path: `/items/${index}/id`, value: id };
}

function guardText(index, text) {
  return { op: "test", path: `/items/${index}`, value: text };
}

function described(change, intent) {
  intent.change = change;
  return intent;
}

const clip = (text) => String(text).slice(0, MAX_TEXT);

// --- intents ----------------------------------------------------------------------------

/** Add an item ({id, text, done}); adding an id that is already there is nothing to do. */
export function addItem(text, id = newItemId()) {
  const item = { id, text: clip(text), done: false };
  return described({ type: "addItem", text: item.text, id }, (data) => {
    if (indexOfId(data, id) !== -1) return null; // already added (a retry after a lost reply)
    const ops = Array.isArray(data?.items) ? [] : [{ op: "add", path: "/items", value: [] }];
    ops.push({ op: "add", path: "/items/-", value: item });
    return ops;
  });
}

/** Add a string to a list of strings (the README's `{"items": ["milk"]}`). */
export function addText(text) {
  const value = clip(text);
  return described({ type: "addText", text: value }, (data) => {
    if (!Array.isArray(data?.items)) return [{ op: "add", path: "/items", value: [value] }];
    return [{ op: "add", path: "/items/-", value }];
  });
}

/** Add an entry in the list's own shape: a string among strings, an item otherwise. */
export function addEntry(data, text, id = newItemId()) {
  return listShape(data) === "strings" ? addText(text) : addItem(text, id);
}

/**
 * Set an item's text. `from` is the text the user saw when editing began: if someone else has
 * changed it since (neither `from` nor `text` is there now), the intent throws EditConflict
 * rather than overwrite their words; without `from` the edit simply wins.
 */
export function editItem(id, text, from) {
  const value = clip(text);
  return described({ type: "editItem", id, text: value, from }, (data) => {
    const i = indexOfId(data, id);
    if (i === -1) return null;
    const now = data.items[i].text;
    if (now === value) return null;
    if (from !== undefined && now !== from) throw new EditConflict({ key: `i:${id}`, mine: value, theirs: now, from });
    return [guard(i, id), { op: "replace", path: `/items/${i}/text`, value }];
  });
}

/** Change a string entry from `from` to `text`; `index` is where it was. */
export function editText(index, from, text) {
  const value = clip(text);
  return described({ type: "editText", index, from, text: value }, (data) => {
    const i = indexOfText(data, from, index);
    if (i === -1) {
      if (indexOfText(data, value, index) !== -1) return null; // already done
      const theirs = Array.isArray(data?.items) && typeof data.items[index] === "string" ? data.items[index] : null;
      throw new EditConflict({ key: `s:${index}`, mine: value, theirs, from });
    }
    if (from === value) return null;
    return [guardText(i, from), { op: "replace", path: `/items/${i}`, value }];
  });
}

export function setDone(id, done) {
  return described({ type: "setDone", id, done }, (data) => {
    const i = indexOfId(data, id);
    if (i === -1 || data.items[i].done === done) return null;
    const op = Object.prototype.hasOwnProperty.call(data.items[i], "done") ? "replace" : "add";
    return [guard(i, id), { op, path: `/items/${i}/done`, value: done }];
  });
}

export function removeItem(id) {
  return described({ type: "removeItem", id }, (data) => {
    const i = indexOfId(data, id);
    if (i === -1) return null;
    return [guard(i, id), { op: "remove", path: `/items/${i}` }];
  });
}

export function removeText(index, text) {
  return described({ type: "removeText", index, text }, (data) => {
    const i = indexOfText(data, text, index);
    if (i === -1) return null;
    return [guardText(i, text), { op: "remove", path: `/items/${i}` }];
  });
}

/**
 * Move an item. With `data` (the list as the user sees it), the move is anchored: "put it right
 * after <the item it is moved past>" (or first), which says the same thing after a rebase and is
 * nothing to do once done. Without `data`, `delta` places (-1 up, +1 down) from wherever it is.
 */
export function moveItem(id, delta, data) {
  const from = indexOfId(data, id);
  if (from === -1) {
    return described({ type: "moveItem", id, delta }, (now) => {
      const i = indexOfId(now, id);
      if (i === -1) return null;
      const to = Math.max(0, Math.min(now.items.length - 1, i + delta));
      return to === i ? null : [guard(i, id), { op: "move", from: `/items/${i}`, path: `/items/${to}` }];
    });
  }
  const to = Math.max(0, Math.min(data.items.length - 1, from + delta));
  const anchorAt = to > from ? to : to - 1; // the entry ours will follow
  const anchor = anchorAt >= 0 && isItem(data.items[anchorAt]) ? data.items[anchorAt].id : null;
  if (anchorAt >= 0 && anchor === null) return moveItem(id, delta); // next to a non-item: relative
  return moveAfter(id, anchor);
}

/** Put item `id` directly after item `after` (null: first). */
export function moveAfter(id, after) {
  return described({ type: "moveAfter", id, after }, (data) => {
    const i = indexOfId(data, id);
    if (i === -1) return null;
    let to = 0;
    if (after !== null) {
      const j = indexOfId(data, after);
      if (j === -1) return null; // the anchor is gone: nothing sensible left to do
      if (i === j + 1) return null;
      to = i < j ? j : j + 1;
    } else if (i === 0) {
      return null;
    }
    return [guard(i, id), { op: "move", from: `/items/${i}`, path: `/items/${to}` }];
  });
}

/** Move a string entry `delta` places from near `index`. */
export function moveText(index, text, delta) {
  return described({ type: "moveText", index, text, delta }, (data) => {
    const i = indexOfText(data, text, index);
    if (i === -1) return null;
    const to = Math.max(0, Math.min(data.items.length - 1, i + delta));
    if (to === i) return null;
    return [guardText(i, text), { op: "move", from: `/items/${i}`, path: `/items/${to}` }];
  });
}

const REVIVERS = {
  addItem: (c) => addItem(c.text, c.id),
  addText: (c) => addText(c.text),
  editItem: (c) => editItem(c.id, c.text, c.from),
  editText: (c) => editText(c.index, c.from, c.text),
  setDone: (c) => setDone(c.id, c.done),
  removeItem: (c) => removeItem(c.id),
  removeText: (c) => removeText(c.index, c.text),
  moveItem: (c) => moveItem(c.id, c.delta),
  moveAfter: (c) => moveAfter(c.id, c.after),
  moveText: (c) => moveText(c.index, c.text, c.delta),
};

/** The intent a stored description stands for (null for a description this code does not know). */
export function revive(change) {
  const make = change && Object.prototype.hasOwnProperty.call(REVIVERS, change.type) ? REVIVERS[change.type] : null;
  return make ? make(change) : null;
}
