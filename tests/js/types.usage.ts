// A typed use of static/sessions/client.js through client.d.ts. Never run: compiled with
// `tsc --noEmit` (strict) by types.test.mjs. Each @ts-expect-error is a misuse the types catch.
import {
  CLOSE_UNAVAILABLE,
  type CloseCode,
  type ErrorCode,
  ProtocolError,
  SessionClient,
  type Snapshot,
  type Status,
  type TokenSource,
} from "../../static/sessions/client.js";

// A state registered by the project (README, "Adding a state"), declared by augmentation.
declare module "../../static/sessions/client.js" {
  interface Requests {
    whoami: { data: { greeting?: string }; reply: { text: string } };
  }
}

declare const tokens: TokenSource;

export async function use(): Promise<void> {
  const client = new SessionClient({ tokens, requestTimeout: 5000 });
  const off = client.on("status", (status: Status) => console.log(status));
  off();
  await client.connect();

  const pong = await client.request("ping");
  const time: string = pong.server_time;

  const created: Snapshot = await client.request("create", { title: "Groceries", data: { items: [] } });
  const joined = await client.request("join", { session: created.id, since: created.version });
  if ("changes" in joined) {
    for (const change of joined.changes) console.log(change.version, change.by.username, change.ops.length);
  } else {
    console.log(joined.data, joined.members.map((m) => m.role));
  }
  const { version } = await client.request("patch", {
    version: created.version,
    ops: [
      { op: "add", path: "/items/-", value: { id: "m", text: "Milk", done: false } },
      { op: "move", from: "/items/0", path: "/items/1" },
    ],
  });
  const next: number = version + 1;
  const history = await client.request("revisions", { limit: 10 });
  for (const revision of history.revisions) console.log(revision.number, revision.by?.username, revision.size);
  for (const change of history.changes) console.log(change.version, change.op_count, change.ops[0]?.path, change.restored);
  const older = await client.request("revisions", { before: 3, changes_before: history.changes.at(-1)?.version });
  const view = await client.request("revision", { number: older.revisions[0]?.number ?? 1 });
  const restored = await client.request("restore", { number: view.number, version: history.version });
  console.log(view.data, restored.version, restored.ops.length);
  const { text } = await client.request("whoami", { greeting: "hi" });

  client.on("patched", (push) => console.log(push.session, push.version, push.by.id, push.restored));
  client.on("presence", (push) => console.log(push.present.length, push.joined?.username));
  client.on("session_added", (push) => console.log(push.session, push.title, push.role, push.by?.username));
  client.on("role_changed", (push) => console.log(push.session, push.role));
  client.on("session_removed", (push) => console.log(push.reason === "deleted"));
  client.on("session_renamed", (push) => console.log(push.title));
  client.on("members", (push) => console.log(push.members.length));
  client.on("closed", ({ code, reason }) => console.log(code, reason));
  client.on("error", (err) => console.log(err.code, err.data));

  try {
    await client.request("invite", { username: "bob", role: "editor" });
    const { members } = await client.request("remove", { username: "bob" });
    const renamed = await client.request("rename", { title: "Groceries" });
    console.log(members.length, renamed.title);
  } catch (err) {
    if (err instanceof ProtocolError && err.code === "conflict") console.log(err.data?.version);
    if (err instanceof ProtocolError && err.code === "quota_exceeded") console.log(err.data);
  }
  const code: ErrorCode = "offline_queue_full";
  const close: CloseCode = CLOSE_UNAVAILABLE;
  console.log(time, next, text, code, close, client.ready, client.retryAt, client.reconnectNow());

  // @ts-expect-error: a restore names the version it is made on
  await client.request("restore", { number: 1 });
  // @ts-expect-error: no such state
  await client.request("pign");
  // @ts-expect-error: `title` is required by create
  await client.request("create", { data: {} });
  // @ts-expect-error: a patch's version is a number
  await client.request("patch", { version: "3", ops: [] });
  // @ts-expect-error: "delete" is not an RFC 6902 operation
  await client.request("patch", { version: 3, ops: [{ op: "delete", path: "/a" }] });
  // @ts-expect-error: an invite's role is editor or viewer, never owner
  await client.request("invite", { username: "bob", role: "owner" });
  // @ts-expect-error: no such event
  client.on("pached", () => {});
  // @ts-expect-error: presence pushes carry no ops
  client.on("presence", (push) => push.ops);
  // @ts-expect-error: not an error code of the protocol
  const wrong: ErrorCode = "oops";
  // @ts-expect-error: not a close code of the protocol
  const bad: CloseCode = 1234;
  console.log(wrong, bad);
}
