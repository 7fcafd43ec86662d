// Reads [{ops, changes, current, left}] as JSON on stdin and writes, for each, the operations
// static/sessions/rebase.js makes of them (or "conflict"): tests/test_rebase_port.py compares
// them with sessions_app/rebase.py's on random cases.
import { RebaseConflict, rebase } from "../../static/sessions/rebase.js";

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const out = JSON.parse(input).map(({ ops, changes, current, left }) => {
    try {
      return rebase(ops, changes, () => current, { left });
    } catch (err) {
      if (err instanceof RebaseConflict) return "conflict";
      throw err;
    }
  });
  process.stdout.write(JSON.stringify(out));
});
