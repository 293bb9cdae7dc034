#!/usr/bin/env bash
# The whole test suite, on a machine that has only rustup's stable toolchain: installs
# cargo-nextest first when it is missing (once; about 4 minutes on 2 cores), then runs every test
# with it. Arguments go to `cargo nextest run` (a filter, `--no-capture`, ...).
#
# What runs depends on what the machine has (each skip prints its reason; with CI set it fails):
# - PostgreSQL at 127.0.0.1:5432 (user postgres, trust auth, database test) for the PostgreSQL
#   half of the REST tests;
# - Chromium, Node.js and tests/browser's modules for the widget test (scripts/setup-browser.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo nextest --version >/dev/null 2>&1; then
    echo "cargo-nextest is missing: installing it (once, about 4 minutes on 2 cores)" >&2
    cargo install --locked cargo-nextest
fi
exec cargo nextest run "$@"
