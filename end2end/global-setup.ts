import { existsSync } from "node:fs";
import path from "node:path";
import { binaryPath, siteRoot } from "./tests/server";

/** Fails early, with the fix, when the release build is missing. */
export default async function globalSetup() {
  // The bundle's names carry hashes, listed in hash.txt beside the binary.
  const hashes = path.join(path.dirname(binaryPath()), "hash.txt");
  const missing = [binaryPath(), hashes, `${siteRoot()}/pkg`].filter((p) => !existsSync(p));
  if (missing.length > 0) {
    throw new Error(
      `missing ${missing.join(", ")}: run \`scripts/build_release.sh\` in the repository root first ` +
        "(scripts/test.sh does it for you)",
    );
  }
}
