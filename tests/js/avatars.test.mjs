// Avatars: distinct per user, readable (white on each colour at 4.5:1 or more).
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { PALETTE, avatarsFor, colorOf, initials } from "../../static/sessions/avatars.js";

// WCAG 2.1 relative luminance and contrast ratio.
function luminance(hex) {
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16) / 255);
  const lin = (c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4);
  return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
}
const contrast = (a, b) => (Math.max(luminance(a), luminance(b)) + 0.05) / (Math.min(luminance(a), luminance(b)) + 0.05);

describe("avatars", () => {
  it("has white text readable on every colour (WCAG AA)", () => {
    for (const color of PALETTE) assert.ok(contrast(color, "#ffffff") >= 4.5, `${color}: ${contrast(color, "#ffffff").toFixed(2)}`);
  });

  it("gives the demo users different initials and colours", () => {
    assert.equal(initials("demo"), "D");
    assert.equal(initials("demo2"), "D2");
    assert.equal(initials("ada.lovelace"), "AL");
    assert.equal(initials("42"), "4");
    assert.equal(initials(""), "?");
    const shown = avatarsFor([{ id: 1, username: "demo" }, { id: 2, username: "demo2" }]);
    assert.notEqual(shown.get(1).color, shown.get(2).color);
  });

  it("keeps a user's colour from page to page (by username), and never repeats one on a page while colours last", () => {
    assert.equal(colorOf("alice"), colorOf("alice"));
    const users = Array.from({ length: PALETTE.length }, (_, i) => ({ id: i + 1, username: `user${i}` }));
    const colors = [...avatarsFor(users).values()].map((a) => a.color);
    assert.equal(new Set(colors).size, PALETTE.length);
    assert.equal(avatarsFor([{ id: 1, username: "alice" }]).get(1).color, colorOf("alice"));
  });
});
