// Playwright for the browser benchmarks, taken from end2end/node_modules: the
// benchmarks and the end-to-end tests use one pinned version
// (end2end/package-lock.json, installed by scripts/setup.sh, no browser
// download), the one checked against Debian's Chromium, instead of a second
// install that could drift from it. Resolved from end2end/ explicitly because
// Node looks for packages only in the importing file's own ancestors.
import { createRequire } from "node:module";

const require = createRequire(new URL("../../end2end/package.json", import.meta.url));

function load() {
  try {
    return require("@playwright/test");
  } catch (err) {
    console.error(`@playwright/test is not installed in end2end/: run scripts/setup.sh (${err.message})`);
    process.exit(2);
  }
}

export const { chromium } = load();
