// The token store's two-factor sign-in (docs/client.md, "Two-factor sign-in"): a password sign-in
// of a user with two-factor on signs nothing in and hands back the ticket; the code finishes it;
// each refusal says what to do next.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { OTP_URL, SIGN_IN_URL, TokenStore } from "../../static/sessions/tokens.js";
import { MemoryStorage } from "./helpers.mjs";

const b64 = (obj) => Buffer.from(JSON.stringify(obj)).toString("base64url");
const ACCESS = `${b64({ alg: "HS256" })}.${b64({ exp: 4102444800, token_type: "access", user_id: 3, jti: "a1" })}.sig`;

/** The server's cookie sign-in for carol, who has two-factor on: ticket "T1", code "123456". */
function site({ otp = [200, null] } = {}) {
  const calls = [];
  const fetch = async (url, init) => {
    const body = JSON.parse(init.body);
    calls.push({ url, body });
    let status = 404;
    let data = null;
    if (url === SIGN_IN_URL) {
      [status, data] = body.password === "pw" ? [200, { otp_required: true, ticket: "T1", expires_in: 300 }] : [401, { detail: "No active account" }];
    } else if (url === OTP_URL) {
      [status, data] = otp[1] !== null ? otp : body.ticket === "T1" && body.code === "123456" ? [200, { access: ACCESS }] : [401, { detail: "x", code: "invalid_code" }];
    }
    return { status, ok: status >= 200 && status < 300, json: async () => data };
  };
  return { calls, fetch };
}

const store = (fetch) => new TokenStore({ storage: new MemoryStorage(), legacy: new MemoryStorage(), fetch, channel: null, locks: undefined });

describe("TokenStore, two-factor sign-in", () => {
  it("hands back the ticket and signs nothing in until the code", async () => {
    const { calls, fetch } = site();
    const t = store(fetch);
    assert.deepEqual(await t.signIn("carol", "pw"), { otpRequired: true, ticket: "T1", expiresIn: 300 });
    assert.ok(!t.signedIn);
    assert.equal(t.access, null);
    await t.signInWithCode("T1", "123456", "carol");
    assert.deepEqual(calls[1], { url: OTP_URL, body: { ticket: "T1", code: "123456" } });
    assert.equal(t.access, ACCESS);
    assert.equal(t.username, "carol");
    assert.equal(t.userKey, "id-3");
  });

  it("tells a wrong code from a dead ticket, a throttle and a lockout", async () => {
    const t = store(site().fetch);
    await assert.rejects(t.signInWithCode("T1", "000000", "carol"), (err) => err.code === "invalid_code" && /Wrong code/.test(err.message));
    assert.ok(!t.signedIn);
    const cases = [
      [[401, { detail: "x", code: "invalid_ticket" }], "invalid_ticket", /expired. Enter your password again/],
      [[429, { detail: "x", code: "otp_throttled" }], "otp_throttled", /Too many wrong codes/],
      [[429, { detail: "Too many failed sign-ins" }], "locked_out", /Too many failed sign-ins/],
    ];
    for (const [answer, code, message] of cases) {
      const other = store(site({ otp: answer }).fetch);
      await assert.rejects(other.signInWithCode("T1", "123456", "carol"), (err) => err.code === code && message.test(err.message));
      assert.ok(!other.signedIn);
    }
  });

  it("a user without two-factor is signed in by the password alone, as before", async () => {
    const fetch = async () => ({ status: 200, ok: true, json: async () => ({ access: ACCESS }) });
    const t = store(fetch);
    assert.deepEqual(await t.signIn("dave", "pw"), { otpRequired: false });
    assert.equal(t.access, ACCESS);
  });
});
