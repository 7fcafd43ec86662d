// The shared checklist stored in a session's document:
//   {"items": [{"id": "<random>", "text": str, "done": bool}]}
// Each function returns an *intent* for LiveSession.change(): given the current data, the
// JSON Patch to send, or null when there is nothing left to do (the item is gone, or already
// as wanted). Items are found by id every time, so an intent stays right after a rebase; each
// patch also `test`s the id at the index it touches.

export const MAX_TEXT = 500;

/** A random item id (crypto.getRandomValues works on plain http too, unlike randomUUID). */
export function newItemId(crypto = globalThis.crypto) {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The items of a document, ignoring anything malformed another client may have written. */
export function itemsOf(data) {
  const items = data && Array.isArray(data.items) ? data.items : [];
  return items.filter((item) => item !== null && typeof item === "object" && typeof item.id === "string");
}

function indexOf(data, id) {
  return data && Array.isArray(data.items) ? data.items.findIndex((item) => item && item.id === id) : -1;
}

function guard(index, id) {
  return { op: "test", path: `/items/${index}/id`, value: id };
}

export function addItem(text, id = newItemId()) {
  const item = { id, text: String(text).slice(0, MAX_TEXT), done: false };
  return (data) => {
    if (indexOf(data, id) !== -1) return null; // already added (a retry after a lost reply)
    const ops = Array.isArray(data?.items) ? [] : [{ op: "add", path: "/items", value: [] }];
    ops.push({ op: "add", path: "/items/-", value: item });
    return ops;
  };
}

export function editItem(id, text) {
  const value = String(text).slice(0, MAX_TEXT);
  return (data) => {
    const i = indexOf(data, id);
    if (i === -1 || data.items[i].text === value) return null;
    return [guard(i, id), { op: "replace", path: `/items/${i}/text`, value }];
  };
}

export function setDone(id, done) {
  return (data) => {
    const i = indexOf(data, id);
    if (i === -1 || data.items[i].done === done) return null;
    const op = Object.prototype.hasOwnProperty.call(data.items[i], "done") ? "replace" : "add";
    return [guard(i, id), { op, path: `/items/${i}/done`, value: done }];
  };
}

export function removeItem(id) {
  return (data) => {
    const i = indexOf(data, id);
    if (i === -1) return null;
    return [guard(i, id), { op: "remove", path: `/items/${i}` }];
  };
}

/** Move an item `delta` places (-1 up, +1 down) from wherever it is now. */
export function moveItem(id, delta) {
  return (data) => {
    const i = indexOf(data, id);
    if (i === -1) return null;
    const to = Math.max(0, Math.min(data.items.length - 1, i + delta));
    if (to === i) return null;
    return [guard(i, id), { op: "move", from: `/items/${i}`, path: `/items/${to}` }];
  };
}
