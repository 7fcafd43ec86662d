// The home page's "Two-factor sign-in" panel: turn it on (QR code and secret, shown once; a code
// from the app confirms), see the recovery codes once, make new ones, turn it off. Every change
// needs a fresh code; turning it on or off ends every sign-in of the user, this page's too
// (docs/client.md, "Two-factor sign-in"). REST calls under /api/v1/otp/ with this tab's access token.

import { SignedOutError, readJson } from "./tokens.js";
import { $, clearNotices, h, notify, show } from "./ui.js";

const STATUS_URL = "/api/v1/otp/";

async function call(tokens, url, body) {
  let access;
  try {
    access = await tokens.freshAccess();
  } catch (err) {
    return { status: 0, ok: false, data: null, error: err };
  }
  let response;
  try {
    response = await fetch(url, {
      method: body === undefined ? "GET" : "POST",
      headers: { Accept: "application/json", "Content-Type": "application/json", Authorization: `Bearer ${access}` },
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit", // the bearer token says who; no cookie is needed
      cache: "no-store",
    });
  } catch {
    return { status: 0, ok: false, data: null };
  }
  return readJson(response);
}

function refusal(result) {
  if (result.status === 0) return "The server cannot be reached. Try again in a moment.";
  if (result.status === 401 && result.data?.code === "invalid_code") return "Wrong code, or a code already used. Try the next one.";
  if (result.status === 429 && result.data?.code === "otp_throttled") return "Too many wrong codes: wait a moment, then try again.";
  if (result.status === 429) return "Too many failed sign-ins for this account. Try again later.";
  if (result.status === 400) return "Enter a code.";
  if (result.status === 403 && result.data?.code === "sign_in_again") {
    return "Turning two-factor on needs a recent sign-in: sign out, sign in again, then turn it on.";
  }
  return result.data?.detail ?? `That did not work (HTTP ${result.status}).`;
}

/** Show recovery codes until the user says they are saved (kept on screen across a sign-out). */
export function showRecoveryCodes(codes) {
  $("#recovery-list").replaceChildren(...codes.map((code) => h("li", {}, h("code", {}, `${code.slice(0, 4)}-${code.slice(4)}`))));
  const section = $("#recovery-codes");
  show(section);
  section.scrollIntoView?.({ block: "nearest" });
  const done = $("#recovery-done");
  done.onclick = () => {
    $("#recovery-list").replaceChildren();
    show(section, false);
  };
}

function panelError(message) {
  const error = $("#otp-panel-error");
  error.textContent = message ?? "";
  show(error, Boolean(message));
}

function render(status) {
  const on = Boolean(status?.enrolled);
  const left = status?.recovery_codes_left ?? 0;
  $("#otp-status").textContent = on
    ? `On: signing in asks for a code of your authenticator app. ${left} recovery code${left === 1 ? "" : "s"} left.`
    : "Off: your password alone signs you in.";
  show($("#otp-enrol"), !on);
  show($("#otp-manage-form"), on);
  if (on) show($("#otp-setup"), false);
}

async function refreshStatus(tokens) {
  const result = await call(tokens, STATUS_URL);
  if (result.ok) render(result.data);
  else $("#otp-status").textContent = "Two-factor sign-in could not be checked.";
}

// Sign this page out with `message`. The server's close of the socket (logged_out) may have come
// first, with its own notice ("signed out on another page"): this one replaces it.
function endSignIn(tokens, message) {
  tokens.end(new SignedOutError(message, { reason: "second_factor" }));
  clearNotices();
  notify(message, { kind: "info", timeout: 0 });
}

function secretGroups(secret) {
  return secret.replace(/(.{4})/g, "$1 ").trim();
}

function bind(tokens) {
  $("#otp-enrol").addEventListener("click", async (event) => {
    event.target.disabled = true;
    panelError(null);
    const result = await call(tokens, "/api/v1/otp/enrol/", {});
    event.target.disabled = false;
    if (!result.ok) return panelError(refusal(result));
    $("#otp-qr").src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(result.data.qr_svg)}`;
    $("#otp-secret").textContent = secretGroups(result.data.secret);
    show($("#otp-enrol"), false);
    show($("#otp-setup"));
    $("#otp-confirm-code").focus();
  });

  $("#otp-confirm-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("#otp-confirm-code");
    const button = event.target.querySelector("button");
    button.disabled = true;
    panelError(null);
    const result = await call(tokens, "/api/v1/otp/confirm/", { code: input.value.trim() });
    button.disabled = false;
    if (!result.ok) {
      panelError(refusal(result));
      return input.select();
    }
    input.value = "";
    $("#otp-qr").removeAttribute("src");
    $("#otp-secret").textContent = "";
    show($("#otp-setup"), false);
    showRecoveryCodes(result.data.recovery_codes);
    // The server ended every sign-in of this account (the rule changed): this page's too.
    endSignIn(tokens, "Two-factor sign-in is on. Sign in again with your password and a code.");
  });

  $("#otp-manage-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const action = event.submitter?.value === "remove" ? "remove" : "recovery";
    const input = $("#otp-manage-code");
    const buttons = [...event.target.querySelectorAll("button")];
    for (const b of buttons) b.disabled = true;
    panelError(null);
    const url = action === "remove" ? "/api/v1/otp/remove/" : "/api/v1/otp/recovery-codes/";
    const result = await call(tokens, url, { code: input.value.trim() });
    for (const b of buttons) b.disabled = false;
    if (!result.ok) {
      panelError(refusal(result));
      return input.select();
    }
    input.value = "";
    if (action === "remove") {
      endSignIn(tokens, "Two-factor sign-in is off. Sign in again with your password.");
      return;
    }
    showRecoveryCodes(result.data.recovery_codes);
    await refreshStatus(tokens);
  });
}

/** Show the panel for the signed-in user (binds its controls once). */
export function startTwoFactor(tokens) {
  const panel = $("#two-factor");
  if (!panel) return;
  if (!panel.dataset.bound) {
    panel.dataset.bound = "1";
    bind(tokens);
  }
  panelError(null);
  refreshStatus(tokens);
}
