// RFC 6902 JSON Patch (all six operations) over RFC 6901 JSON Pointers.
//
// applyPatch() never mutates its input: it works on a deep copy and returns it, so a patch is
// atomic from the caller's point of view (an operation that cannot be applied throws
// PatchError and the caller's document is untouched), which is what the server does too.

export class PatchError extends Error {
  constructor(message, index) {
    super(index === undefined ? message : `operation ${index}: ${message}`);
    this.name = "PatchError";
    this.index = index;
  }
}

/** Split a JSON Pointer ("/items/0/text") into unescaped reference tokens (RFC 6901 §3-4). */
export function parsePointer(pointer) {
  if (typeof pointer !== "string") throw new PatchError(`pointer must be a string`);
  if (pointer === "") return [];
  if (pointer[0] !== "/") throw new PatchError(`invalid pointer ${JSON.stringify(pointer)}`);
  return pointer
    .slice(1)
    .split("/")
    .map((token) => {
      if (/~[^01]|~$/.test(token)) throw new PatchError(`invalid escape in ${JSON.stringify(pointer)}`);
      return token.replace(/~1/g, "/").replace(/~0/g, "~");
    });
}

/** Build a JSON Pointer from reference tokens, escaping "~" and "/". */
export function formatPointer(tokens) {
  return tokens.map((t) => "/" + String(t).replace(/~/g, "~0").replace(/\//g, "~1")).join("");
}

export function deepClone(value) {
  return value === undefined ? undefined : JSON.parse(JSON.stringify(value));
}

/** Structural JSON equality (object key order does not matter), as `test` requires. */
export function deepEqual(a, b) {
  if (a === b) return true;
  if (typeof a !== typeof b || a === null || b === null || typeof a !== "object") return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) return a.length === b.length && a.every((v, i) => deepEqual(v, b[i]));
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  return keys.every((k) => Object.prototype.hasOwnProperty.call(b, k) && deepEqual(a[k], b[k]));
}

function isContainer(value) {
  return value !== null && typeof value === "object";
}

function arrayIndex(token, length, allowEnd) {
  if (allowEnd && token === "-") return length;
  if (!/^(0|[1-9][0-9]*)$/.test(token)) throw new PatchError(`invalid array index ${JSON.stringify(token)}`);
  const index = Number(token);
  if (index > length || (!allowEnd && index === length)) throw new PatchError(`array index ${index} out of range`);
  return index;
}

function has(obj, key) {
  return Object.prototype.hasOwnProperty.call(obj, key);
}

/** The value a pointer refers to; throws PatchError if it does not exist. */
export function getValue(doc, pointer) {
  let node = doc;
  for (const token of parsePointer(pointer)) {
    if (Array.isArray(node)) node = node[arrayIndex(token, node.length, false)];
    else if (isContainer(node) && has(node, token)) node = node[token];
    else throw new PatchError(`path ${JSON.stringify(pointer)} does not exist`);
  }
  return node;
}

// Resolve the parent container of a pointer; returns [parent, lastToken].
function parentOf(doc, pointer) {
  const tokens = parsePointer(pointer);
  if (tokens.length === 0) return [null, null];
  const last = tokens.pop();
  const parent = getValue(doc, formatPointer(tokens));
  if (!isContainer(parent)) throw new PatchError(`parent of ${JSON.stringify(pointer)} is not a container`);
  return [parent, last];
}

function add(doc, path, value) {
  const [parent, key] = parentOf(doc, path);
  if (parent === null) return value;
  if (Array.isArray(parent)) parent.splice(arrayIndex(key, parent.length, true), 0, value);
  else parent[key] = value;
  return doc;
}

function remove(doc, path) {
  const [parent, key] = parentOf(doc, path);
  if (parent === null) throw new PatchError("cannot remove the whole document");
  if (Array.isArray(parent)) parent.splice(arrayIndex(key, parent.length, false), 1);
  else if (has(parent, key)) delete parent[key];
  else throw new PatchError(`path ${JSON.stringify(path)} does not exist`);
  return doc;
}

function replace(doc, path, value) {
  const [parent, key] = parentOf(doc, path);
  if (parent === null) return value;
  if (Array.isArray(parent)) parent[arrayIndex(key, parent.length, false)] = value;
  else if (has(parent, key)) parent[key] = value;
  else throw new PatchError(`path ${JSON.stringify(path)} does not exist`);
  return doc;
}

function applyOne(doc, op) {
  if (!isContainer(op) || typeof op.op !== "string") throw new PatchError("operation must be an object with 'op'");
  if (typeof op.path !== "string") throw new PatchError("operation needs a string 'path'");
  const needsValue = op.op === "add" || op.op === "replace" || op.op === "test";
  if (needsValue && !has(op, "value")) throw new PatchError(`'${op.op}' needs a 'value'`);
  switch (op.op) {
    case "add":
      return add(doc, op.path, deepClone(op.value));
    case "remove":
      return remove(doc, op.path);
    case "replace":
      return replace(doc, op.path, deepClone(op.value));
    case "test":
      if (!deepEqual(getValue(doc, op.path), op.value)) throw new PatchError(`test failed at ${op.path}`);
      return doc;
    case "move": {
      if (typeof op.from !== "string") throw new PatchError("'move' needs a string 'from'");
      if (op.path !== op.from && op.path.startsWith(op.from + "/")) {
        throw new PatchError("cannot move a value into one of its own children");
      }
      const value = getValue(doc, op.from);
      return add(remove(doc, op.from), op.path, value);
    }
    case "copy":
      if (typeof op.from !== "string") throw new PatchError("'copy' needs a string 'from'");
      return add(doc, op.path, deepClone(getValue(doc, op.from)));
    default:
      throw new PatchError(`unknown operation ${JSON.stringify(op.op)}`);
  }
}

/** Apply a list of operations to a copy of `doc` and return the copy. Throws PatchError. */
export function applyPatch(doc, ops) {
  if (!Array.isArray(ops)) throw new PatchError("a patch is an array of operations");
  let result = deepClone(doc);
  ops.forEach((op, index) => {
    try {
      result = applyOne(result, op);
    } catch (err) {
      if (err instanceof PatchError && err.index === undefined) throw new PatchError(err.message, index);
      throw err;
    }
  });
  return result;
}
