import { existsSync } from "node:fs";
import { binaryPath, siteRoot } from "./tests/server";

/** Fails early, with the fix, when the release build is missing. */
export default async function globalSetup() {
  const missing = [binaryPath(), `${siteRoot()}/pkg/pulse.wasm`].filter((p) => !existsSync(p));
  if (missing.length > 0) {
    throw new Error(
      `missing ${missing.join(", ")}: run \`cargo leptos build --release\` in the repository root first ` +
        "(scripts/test.sh does it for you)",
    );
  }
}
