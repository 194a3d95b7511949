#!/usr/bin/env bash
# Rebuilds fahrenheit.wasm from assembly/index.ts with the pinned AssemblyScript
# (npm registry). The built module is committed, so tests need no compiler.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
npm run build
