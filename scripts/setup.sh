#!/usr/bin/env bash
# Installs whatever a fresh Debian 12 machine lacks to build, run and test Pulse.
# Idempotent: every step checks first, so running it again costs seconds.
# Versions come from ../shared/TOOLCHAIN.md (rustc 1.95 is the limit here).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then SUDO="sudo"; fi

# Debian packages: Chromium for the Playwright tests (never Playwright's own
# download, which cannot work here), Node/npm for Playwright and binaryen.
apt_missing=()
command -v chromium >/dev/null || apt_missing+=(chromium)
command -v node >/dev/null || apt_missing+=(nodejs)
command -v npm >/dev/null || apt_missing+=(npm)
command -v cc >/dev/null || apt_missing+=(build-essential)
command -v pkg-config >/dev/null || apt_missing+=(pkg-config)
# Python 3 for the pycrdt interop peer; Debian's python3 makes venvs (with pip)
# only with python3-venv, which is what provides ensurepip.
command -v python3 >/dev/null || apt_missing+=(python3)
python3 -c 'import ensurepip' 2>/dev/null || apt_missing+=(python3-venv)
# PostgreSQL and Redis binaries: the tests start private throwaway servers on
# free ports (tests/common/postgres.rs, tests/common/redis.rs); no service is
# started here.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || apt_missing+=(postgresql)
command -v redis-server >/dev/null || apt_missing+=(redis-server)
if [ ${#apt_missing[@]} -gt 0 ]; then
  log "apt-get install ${apt_missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${apt_missing[@]}"
fi

# The wasm target for the hydrate build.
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "rustup target add wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt

# cargo-leptos 0.3.10: 0.3.11 needs rustc 1.96. `no_downloads` makes a missing
# tool a clear error instead of a failed download. Building it without LTO
# roughly halves the time and the disk it takes.
if [ "$(cargo leptos --version 2>/dev/null || true)" != "cargo-leptos 0.3.10" ]; then
  log "cargo install cargo-leptos 0.3.10 (about 17 minutes on 2 cores)"
  CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    cargo install cargo-leptos --version 0.3.10 --locked --features no_downloads
fi

# wasm-bindgen CLI, equal to the wasm-bindgen crate pinned in Cargo.toml:
# cargo-leptos runs it to generate the JS glue. Not --locked: one locked
# dependency of 0.2.130 is missing from the registry.
if [ "$(wasm-bindgen --version 2>/dev/null || true)" != "wasm-bindgen 0.2.130" ]; then
  log "cargo install wasm-bindgen-cli 0.2.130 (about 3 minutes)"
  cargo install wasm-bindgen-cli --version 0.2.130 --force
fi

# wasm-opt from npm's binaryen 132 (Debian's 108 silently breaks hydration),
# and Playwright for the end-to-end tests. Both are pinned by lock files.
if [ ! -x tools/node_modules/.bin/wasm-opt ]; then
  log "npm ci in tools/ (binaryen 132)"
  (cd tools && npm ci --no-audit --no-fund --loglevel=error)
fi
# Again whenever the lock file is newer than what npm last installed (npm ci
# writes node_modules/.package-lock.json), so a package added to end2end/
# (such as @axe-core/playwright) reaches machines set up before it.
if [ ! -f end2end/node_modules/.package-lock.json ] ||
  [ end2end/package-lock.json -nt end2end/node_modules/.package-lock.json ]; then
  log "npm ci in end2end/ (Playwright and axe-core, no browser download)"
  (cd end2end && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi
# The pycrdt interop peer's packages (end2end/interop/pycrdt_peer.py) in a venv
# of their own, tools/pyenv, pinned by end2end/interop/requirements.txt: again
# whenever that file is newer than the stamp of the last install. The venv's
# own .gitignore keeps it out of git (as Python 3.13's venv writes by itself).
if [ ! -x tools/pyenv/bin/python ]; then
  log "python3 -m venv tools/pyenv"
  rm -rf tools/pyenv
  python3 -m venv tools/pyenv
  echo '*' >tools/pyenv/.gitignore
fi
if [ ! -f tools/pyenv/.requirements.stamp ] ||
  [ end2end/interop/requirements.txt -nt tools/pyenv/.requirements.stamp ]; then
  log "pip install in tools/pyenv (pycrdt and websockets)"
  tools/pyenv/bin/python -m pip install --quiet --disable-pip-version-check \
    -r end2end/interop/requirements.txt
  touch tools/pyenv/.requirements.stamp
fi
log "tools ready"
