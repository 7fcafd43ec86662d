// Avatars: a colour and initials per user, from a hash of the username, so the same person looks
// the same on every page and in every tab, and "demo" and "demo2" do not both look like a blue D.
// Pure: no DOM.

// White text on each of these has a contrast of at least 4.5:1 (WCAG AA), checked in
// tests/js/avatars.test.mjs; the names keep them apart for people who cannot tell colours apart.
export const PALETTE = Object.freeze([
  "#1f5fbf", // blue
  "#b3261e", // red
  "#1b6e3a", // green
  "#7b3fb3", // purple
  "#9c4a00", // orange
  "#00707a", // teal
  "#a8246b", // magenta
  "#56601a", // olive
  "#4f46a8", // indigo
  "#7a4a2e", // brown
  "#3d5a80", // slate
  "#8c3b5e", // plum
]);

/** FNV-1a, 32 bits: small, fast and well spread for short strings. */
export function hash(text) {
  let h = 0x811c9dc5;
  for (const char of String(text)) {
    h ^= char.codePointAt(0);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/**
 * Initials: the first letter, plus a trailing number ("demo2" -> "D2") or the first letter of
 * a second word ("ada lovelace", "ada.lovelace" -> "AL").
 */
export function initials(username) {
  const name = String(username ?? "").trim();
  if (!name) return "?";
  const first = [...name][0].toUpperCase();
  const digits = name.match(/(\d+)$/);
  if (digits && digits[1].length < name.length) return first + digits[1].slice(-2);
  const second = name.match(/^[^\s._-]+[\s._-]+(\S)/u);
  return second ? first + second[1].toUpperCase() : first;
}

/** The colour of one user, by username alone. */
export function colorOf(username) {
  return PALETTE[hash(username) % PALETTE.length];
}

/**
 * {id -> {initials, color}} for the people shown together: each keeps its own colour unless
 * someone shown earlier (lower id) already has it, then it takes the next free one, so no two
 * avatars on the page look alike while the palette lasts.
 */
export function avatarsFor(users) {
  const taken = new Set();
  const out = new Map();
  for (const user of [...users].sort((a, b) => a.id - b.id)) {
    let index = hash(user.username) % PALETTE.length;
    for (let n = 0; n < PALETTE.length && taken.has(index); n += 1) index = (index + 1) % PALETTE.length;
    taken.add(index);
    out.set(user.id, { initials: initials(user.username), color: PALETTE[index] });
  }
  return out;
}
