#!/usr/bin/env bash
# Installs the migration tools the end-to-end tests run for real from the npm registry (dbmate,
# knex, node-pg-migrate, typeorm, sequelize-cli: tests/tools/package.json) into one cache
# directory that every test run shares; does nothing when it already holds that list.
#   scripts/tools-deps.sh [DIR]    (default build/tools; the tests read MTR_TOOLS_DIR or it)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-build/tools}"
want="tests/tools/package.json"
stamp="$dir/.installed"
key="$(sha256sum "$want" | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ]; then
    exit 0
fi
command -v npm >/dev/null || { echo "tools-deps: npm is missing (apt-get install npm, or Node.js with npm)" >&2; exit 1; }
mkdir -p "$dir"
cp "$want" "$dir/package.json"
echo "tools-deps: installing the npm migration tools into $dir" >&2
(cd "$dir" && npm install --no-audit --no-fund --no-package-lock --loglevel=error >/dev/null)
echo "$key" > "$stamp"
