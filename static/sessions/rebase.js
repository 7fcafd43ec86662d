// Rebase RFC 6902 operations made on an older version onto the changes made since: a line-by-line
// port of the server's sessions_app/rebase.py (json0's transformation rules, ShareDB's JSON type,
// carried over to RFC 6902; docs/protocol.md section 7, "Rebase", states them). The two must
// agree on every case: tests/rebase_cases.json is run by both test suites.
//
//   rebase(ops, changes, () => currentData) -> ops as they apply to currentData; throws RebaseConflict
//
// The client uses it to show its pending changes on top of the server's copy exactly as the
// server will apply them (LiveSession.view), and to recognise its own rebased change.

export const INSERT = "insert";
export const DELETE = "delete";
export const SET = "set";
export const READ = "read";
export const THROUGH = "through";
const INDEX = /^(0|[1-9][0-9]*)$/;
const CREATED = Symbol("created");

export class RebaseConflict extends Error {
  constructor(reason) {
    super(reason);
    this.name = "RebaseConflict";
    this.reason = reason;
  }
}

export class RebaseTooCostly extends RebaseConflict {
  constructor(reason) {
    super(reason);
    this.name = "RebaseTooCostly";
  }
}

export function parsePointer(pointer) {
  if (typeof pointer !== "string" || (pointer && pointer[0] !== "/")) throw new RebaseConflict("an operation has a malformed pointer");
  if (pointer === "") return [];
  const tokens = pointer.slice(1).split("/");
  if (tokens.some((t) => /~[^01]|~$/.test(t))) throw new RebaseConflict("an operation has a malformed pointer");
  return tokens.map((t) => t.replace(/~1/g, "/").replace(/~0/g, "~"));
}

export function formatPointer(tokens) {
  return tokens.map((t) => "/" + t.replace(/~/g, "~0").replace(/\//g, "~1")).join("");
}

const effect = (kind, path, arrays = []) => ({ kind, path, arrays });
const isIndex = (token) => INDEX.test(token);
const samePrefix = (a, b, n) => {
  for (let i = 0; i < n; i += 1) if (a[i] !== b[i]) return false;
  return true;
};
const equal = (a, b) => a.length === b.length && samePrefix(a, b, a.length);

/** The primitive effects of one RFC 6902 operation, in order. */
export function effects(op) {
  if (op === null || typeof op !== "object" || Array.isArray(op)) throw new RebaseConflict("an operation is not an object");
  const path = parsePointer(op.path);
  switch (op.op) {
    case "add":
      return [effect(INSERT, path)];
    case "remove":
      return [effect(DELETE, path)];
    case "replace":
      return [effect(SET, path)];
    case "test":
      return [effect(READ, path)];
    case "move":
    case "copy": {
      const source = parsePointer(op.from);
      if (op.op === "move" && equal(source, path)) return [effect(READ, path)];
      return [effect(op.op === "move" ? DELETE : READ, source), effect(INSERT, path)];
    }
    default:
      throw new RebaseConflict("an operation is not an RFC 6902 operation");
  }
}

function arrayAt(a, b, depth) {
  if (depth < 0) return false;
  if (depth < a.arrays.length && a.arrays[depth] !== null && a.arrays[depth] !== undefined) return Boolean(a.arrays[depth]);
  if (depth < b.arrays.length && samePrefix(a.path, b.path, depth)) return Boolean(b.arrays[depth]);
  return false;
}

function shifted(path, depth, by) {
  const copy = path.slice();
  copy[depth] = String(Number(path[depth]) + by);
  return copy;
}

const at = (tokens) => formatPointer(tokens) || "the document";

/** `a` as it applies after `b` (both made on one document); throws RebaseConflict on overlap. */
export function transform(a, b, left) {
  if (b.kind === READ) return a;
  const p = a.path;
  const q = b.path;
  const m = p.length;
  const n = q.length;
  if (m <= n && samePrefix(q, p, m)) {
    const aInserts = a.kind === INSERT && m > 0 && arrayAt(a, b, m - 1);
    if (m === n) {
      if (aInserts) {
        if (b.kind === INSERT && !left && isIndex(p[m - 1]) && isIndex(q[n - 1])) return { ...a, path: shifted(p, m - 1, 1) };
        return a;
      }
      if (b.kind === INSERT && n > 0 && arrayAt(b, a, n - 1) && isIndex(q[n - 1])) return { ...a, path: shifted(p, m - 1, 1) };
      throw new RebaseConflict(`both change ${at(p)}`);
    }
    if (aInserts || a.kind === THROUGH) return a;
    throw new RebaseConflict(`${formatPointer(q)} changed inside ${at(p)}`);
  }
  if (n < m && samePrefix(p, q, n)) {
    if (b.kind === INSERT && arrayAt(b, a, n - 1) && isIndex(q[n - 1]) && isIndex(p[n - 1])) return { ...a, path: shifted(p, n - 1, 1) };
    throw new RebaseConflict(`${at(q)} changed around ${formatPointer(p)}`);
  }
  if (n && n - 1 < m && samePrefix(p, q, n - 1) && (b.kind === INSERT || b.kind === DELETE) && arrayAt(a, b, n - 1)) {
    const x = p[n - 1];
    const i = q[n - 1];
    if (isIndex(x) && isIndex(i) && Number(i) < Number(x)) return { ...a, path: shifted(p, n - 1, b.kind === INSERT ? 1 : -1) };
  }
  return a;
}

function unapply(path, e) {
  const q = e.path;
  const n = q.length;
  if (e.kind === READ || e.kind === THROUGH || path.length < n) return path;
  if ((e.kind === INSERT || e.kind === DELETE) && n && arrayAt(e, e, n - 1) && samePrefix(path, q, n - 1)) {
    const x = path[n - 1];
    const i = q[n - 1];
    if (!isIndex(x) || !isIndex(i)) return path;
    if (e.kind === INSERT) {
      if (Number(x) === Number(i)) return CREATED;
      return Number(x) > Number(i) ? shifted(path, n - 1, -1) : path;
    }
    return Number(x) >= Number(i) ? shifted(path, n - 1, 1) : path;
  }
  if ((e.kind === INSERT || e.kind === SET) && samePrefix(path, q, n)) return CREATED;
  return path;
}

/** true for an array at `path` in `document`, false for an object, null for anything else. */
export function kindAt(document, path) {
  let node = document;
  for (const token of path) {
    if (Array.isArray(node)) {
      if (!isIndex(token) || Number(token) >= node.length) return null;
      node = node[Number(token)];
    } else if (node !== null && typeof node === "object" && Object.prototype.hasOwnProperty.call(node, token)) {
      node = node[token];
    } else {
      return null;
    }
  }
  if (Array.isArray(node)) return true;
  return node !== null && typeof node === "object" ? false : null;
}

function through(a, theirs, budget) {
  budget.spend(theirs.length);
  for (const b of theirs) a = transform(a, b, true);
  return a;
}

function resolve(e, theirs, mine, document, budget) {
  const arrays = [false];
  for (let depth = 1; depth < e.path.length; depth += 1) {
    if (!theirs.some((b) => b.path.length > depth)) {
      arrays.push(null);
      continue;
    }
    let prefix = through(effect(THROUGH, e.path.slice(0, depth), arrays.slice()), theirs, budget).path;
    for (let k = mine.length - 1; k >= 0 && prefix !== CREATED; k -= 1) prefix = unapply(prefix, mine[k]);
    arrays.push(prefix === CREATED ? null : kindAt(document(), prefix));
  }
  return { ...e, arrays };
}

/**
 * `ops` (made on some version) as they apply after `changes` (the operations of each change
 * since, oldest first, as applied); `document()` returns the data after `changes`. Returns copies
 * of the operations with `path` and `from` moved; throws RebaseConflict (`reason`) on a collision,
 * RebaseTooCostly past `maxSteps`. `left`: as the server (false: the other side of json0's tie).
 */
export function rebase(ops, changes, document, { maxSteps = 20_000, left = true } = {}) {
  let steps = maxSteps;
  const budget = {
    spend(n) {
      steps -= n;
      if (steps < 0) throw new RebaseTooCostly("the patch and the changes since its version are too many to rebase");
    },
  };
  // Refused before any work when the least it could cost is over the budget (sessions_app/rebase.py).
  const theirOps = changes.reduce((n, change) => n + change.length, 0);
  budget.spend(theirOps);
  if (3 * theirOps * ops.length > steps) throw new RebaseTooCostly("the patch and the changes since its version are too many to rebase");
  let theirs = changes.flatMap((change) => change.flatMap((op) => effects(op))).filter((e) => e.kind !== READ);
  const out = [];
  const mine = [];
  const appended = [];
  for (const op of ops) {
    const moved = [];
    for (let e of effects(op)) {
      for (const array of appended) {
        const n = array.length;
        if (e.path.length > n && samePrefix(e.path, array, n) && isIndex(e.path[n])) {
          throw new RebaseConflict(`${formatPointer(array)} changed length since`);
        }
      }
      e = resolve(e, theirs, mine, document, budget);
      if (e.kind === INSERT && e.path.length && e.path[e.path.length - 1] === "-") {
        const parent = e.path.slice(0, -1);
        if (theirs.some((b) => (b.kind === INSERT || b.kind === DELETE) && equal(b.path.slice(0, -1), parent))) appended.push(parent);
      }
      budget.spend(2 * theirs.length);
      const after = [];
      for (const b of theirs) {
        const a = transform(e, b, left);
        after.push(transform(b, e, !left));
        e = a;
      }
      theirs = after;
      mine.push(e);
      moved.push(e);
    }
    const rebuilt = { ...op, path: formatPointer(moved[moved.length - 1].path) };
    if ("from" in op) rebuilt.from = formatPointer(moved[0].path);
    out.push(rebuilt);
  }
  return out;
}
