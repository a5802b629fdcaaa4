#!/usr/bin/env bash
# The package as users get it: `npm pack`, the tarball installed into an empty directory without dev
# dependencies, then the installed CLI run on every Node line in `engines` (this machine's, and official
# 22 and 24 binaries from the npm registry, cached under .cache/): --help, --version, a --json dry-run
# against PostgreSQL and a local S3 server, and a small demo. A file missing from `files` fails here.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work="$(mktemp -d)"
database="oss_smoke_$$"
admin="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
s3pid=""
cleanup() {
  [ -n "$s3pid" ] && kill "$s3pid" 2>/dev/null || true
  psql "$admin" -qc "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

source "$root/.ci/node-for.sh"

echo "== npm pack"
tarball="$(npm pack --silent --pack-destination "$work" | tail -n 1)"
mkdir "$work/app"
(cd "$work/app" && npm init -y >/dev/null && npm install --omit=dev --no-audit --no-fund "$work/$tarball" >/dev/null)
installed="$work/app/node_modules/overskill-storage"
bin="$installed/bin/overskill-storage.js"
for dev in typescript tsx vitest; do
  if [ -e "$work/app/node_modules/$dev" ]; then echo "development dependency $dev was installed with --omit=dev" >&2; exit 1; fi
done

echo "== a scratch database with OverSkill's tables, one app and a file; a local S3 server"
psql "$admin" -qc "CREATE DATABASE $database" >/dev/null
url="${admin%/*}/$database"
node --input-type=module -e "const { OVERSKILL_TABLES_SQL } = await import(process.argv[1]); process.stdout.write(OVERSKILL_TABLES_SQL)" "$installed/dist/src/local/overskill-schema.js" | psql "$url" -q >/dev/null
psql "$url" -qc "INSERT INTO apps (name) VALUES ('smoke'); INSERT INTO app_files (app_id, path, content) SELECT id, 'src/App.tsx', repeat('x', 5000) FROM apps" >/dev/null
node --input-type=module -e "
  const { startLocalS3 } = await import(process.argv[1]);
  const s3 = await startLocalS3({ bucket: 'smoke' });
  console.log(s3.endpoint);
  process.on('SIGTERM', async () => { await s3.stop(); process.exit(0); });
  setInterval(() => {}, 1 << 30);
" "$installed/dist/src/local/s3-server.js" > "$work/s3-endpoint" &
s3pid=$!
for _ in $(seq 1 50); do [ -s "$work/s3-endpoint" ] && break; sleep 0.2; done
export DATABASE_URL="$url" R2_ENDPOINT="$(head -n 1 "$work/s3-endpoint")" R2_ACCESS_KEY_ID=S3RVER R2_SECRET_ACCESS_KEY=S3RVER R2_BUCKET=smoke NO_COLOR=1

for major in system 22 24; do
  if [ "$major" = system ]; then node_bin="$(command -v node)"; else node_bin="$(node_for "$major")"; fi
  echo "== $("$node_bin" --version): the installed package"
  (cd "$work/app"
    "$node_bin" "$bin" --help | grep -q 'restore-version'
    # the library entry the README's read-path example imports
    "$node_bin" --input-type=module -e "
      const lib = await import('overskill-storage');
      for (const name of ['createDb', 'ObjectStore', 'readAppFile', 'streamStoredContent']) if (typeof lib[name] !== 'function') throw new Error('missing export ' + name);
      const manifest = await import('overskill-storage/package.json', { with: { type: 'json' } });
      if (!manifest.default.version) throw new Error('no version');
    "
    "$node_bin" "$bin" --version | grep -qx "overskill-storage $(node -p "require('$installed/package.json').version")"
    "$node_bin" "$bin" schema --apply --yes --json > "$work/schema.json"
    "$node_bin" "$bin" migrate --dry-run --json > "$work/plan.json"
    node -e '
      const plan = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
      if (plan.schemaVersion !== 1 || plan.command !== "migrate" || plan.dryRun !== true || plan.plan.rows !== 1) { console.error(plan); process.exit(1); }
    ' "$work/plan.json"
    "$node_bin" "$bin" demo --apps 3 --files 10 --json > "$work/demo.json" 2> "$work/demo.log" || { cat "$work/demo.log" >&2; exit 1; }
    node -e '
      const demo = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
      if (!demo.ok || !demo.byteIdentical) { console.error(demo); process.exit(1); }
    ' "$work/demo.json"
  )
  echo "   --help, --version, schema --apply, migrate --dry-run --json and demo: ok"
done
