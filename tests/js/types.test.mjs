// client.d.ts: every export of client.js is declared, and a typed use of the client compiles
// under `tsc --strict` (tests/js/types.usage.ts, whose @ts-expect-error lines are misuses the
// types must catch). tsc is pinned in package.json and installed by `make install-dev` (npm ci).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

import * as client from "../../static/sessions/client.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const declarations = readFileSync(join(root, "static/sessions/client.d.ts"), "utf8");
const tsc = join(root, "node_modules/.bin/tsc");

describe("client.d.ts", () => {
  it("declares every export of client.js", () => {
    const declared = new Set([...declarations.matchAll(/^export (?:declare )?(?:class|function|const) (\w+)/gm)].map((m) => m[1]));
    const missing = Object.keys(client).filter((name) => !declared.has(name));
    assert.deepEqual(missing, []);
    const extra = [...declared].filter((name) => !(name in client));
    assert.deepEqual(extra, [], "declared but not exported by client.js");
  });

  it("declares the close codes client.js exports, with their values", () => {
    for (const [name, value] of Object.entries(client).filter(([n]) => n.startsWith("CLOSE_"))) {
      assert.match(declarations, new RegExp(`export const ${name}: ${value};`));
    }
  });

  it("type-checks a typed use of the client (tsc --noEmit, strict)", { skip: !existsSync(tsc) && process.env.REQUIRE_ALL !== "1" && "tsc not installed: run `make install-dev` (npm ci)" }, () => {
    assert.ok(existsSync(tsc), "node_modules/.bin/tsc is missing: `make install-dev` installs it (npm ci)");
    try {
      execFileSync(tsc, ["-p", join(root, "tests/js/tsconfig.json")], { encoding: "utf8", stdio: "pipe" });
    } catch (err) {
      assert.fail(`tsc found type errors:\n${err.stdout}${err.stderr}`);
    }
  });
});
