import { query, type Db } from '../src/db.ts';

/**
 * The shape of real web-app files (measured over 13,784 files of 150 apps built from create-vite,
 * create-next-app and similar templates): a 1.2 KB median, 45% of files under 1 KiB, 3% over 10 KiB, and an npm
 * lockfile of 30-200 KB in about half the apps. Sizes are log-normal around a 1,100-byte median with sigma 1.2
 * (the dataset the demo seeds, src/local/dataset.ts, draws the same).
 */
export const REAL_SHAPE = { medianBytes: 1100, sigma: 1.2, lockfileMinBytes: 30_000, lockfileMaxBytes: 200_000 };

/** Lines of the shapes app code has (imports, hooks, JSX, CSS, i18n), with other names in each: TOAST compresses them as it does real code. */
const LINE_SQL = `CASE floor(random() * 8)::int
  WHEN 0 THEN 'import { ' || w[1 + floor(random() * 20)::int] || ' } from ''@/components/ui/' || n[1 + floor(random() * 24)::int] || ''';'
  WHEN 1 THEN '  const [' || n[1 + floor(random() * 24)::int] || ', set' || w[1 + floor(random() * 20)::int] || '] = useState<' || w[1 + floor(random() * 20)::int] || ' | null>(null);'
  WHEN 2 THEN '    <div className="' || c[1 + floor(random() * 12)::int] || ' ' || c[1 + floor(random() * 12)::int] || ' ' || c[1 + floor(random() * 12)::int] || '">'
  WHEN 3 THEN '      <' || w[1 + floor(random() * 20)::int] || ' ' || n[1 + floor(random() * 24)::int] || '={' || n[1 + floor(random() * 24)::int] || '.' || n[1 + floor(random() * 24)::int] || '} />'
  WHEN 4 THEN '  const ' || n[1 + floor(random() * 24)::int] || ' = ' || n[1 + floor(random() * 24)::int] || '.filter((x) => x.' || n[1 + floor(random() * 24)::int] || ' > ' || floor(random() * 10000)::int || ');'
  WHEN 5 THEN '.' || n[1 + floor(random() * 24)::int] || '-' || n[1 + floor(random() * 24)::int] || ' { margin: ' || floor(random() * 48)::int || 'px; color: #' || lpad(to_hex(floor(random() * 16777215)::int), 6, '0') || '; }'
  WHEN 6 THEN '  "' || n[1 + floor(random() * 24)::int] || '.' || n[1 + floor(random() * 24)::int] || '": "' || w[1 + floor(random() * 20)::int] || ' ' || n[1 + floor(random() * 24)::int] || '",'
  ELSE '  // ' || w[1 + floor(random() * 20)::int] || ': keep the ' || n[1 + floor(random() * 24)::int] || ' in sync with the ' || n[1 + floor(random() * 24)::int]
END`;

/** A lockfile entry: a package, its version, its tarball and a sha512 integrity (incompressible, as in real ones). */
const LOCK_ENTRY_SQL = `'    "node_modules/' || n[1 + floor(random() * 24)::int] || '-' || n[1 + floor(random() * 24)::int] || '": {' || E'\\n' ||
  '      "version": "' || floor(random() * 9)::int || '.' || floor(random() * 30)::int || '.' || floor(random() * 20)::int || '",' || E'\\n' ||
  '      "integrity": "sha512-' || replace(encode(sha512(random()::text::bytea), 'base64'), E'\\n', '') || '"' || E'\\n    },'`;

const WORDS = ['Button', 'Card', 'Header', 'Footer', 'Dashboard', 'Profile', 'Settings', 'Modal', 'Table', 'Chart', 'Form', 'Input', 'Layout', 'Nav', 'Pricing', 'Checkout', 'Cart', 'Search', 'Toast', 'Avatar'];
const NAMES = ['user', 'item', 'order', 'price', 'total', 'title', 'label', 'value', 'state', 'props', 'theme', 'color', 'size', 'variant', 'index', 'count', 'query', 'result', 'error', 'loading', 'session', 'account', 'invoice', 'product'];
const CLASSES = ['flex', 'grid', 'items-center', 'justify-between', 'gap-2', 'p-4', 'rounded-lg', 'shadow-sm', 'text-sm', 'font-medium', 'border', 'w-full'];

/**
 * Seeds `count` app_files rows in SQL, real-shaped (REAL_SHAPE): source-like text, one lockfile in every
 * second app. `largePercent` of rows are instead 1 to `largeMaxMb` MB (for the memory steps). Distinct per row.
 */
export async function seedFiles(db: Db, options: { count: number; largePercent: number; largeMaxMb?: number; filesPerApp?: number }): Promise<{ rows: number; bytes: number }> {
  const perApp = options.filesPerApp ?? 85;
  const apps = Math.ceil(options.count / perApp);
  const [{ first }] = await query<{ first: string }>(
    db,
    `WITH added AS (INSERT INTO apps (name) SELECT 'bench ' || i FROM generate_series(1, $1::int) i RETURNING id) SELECT min(id) AS first FROM added`,
    [apps],
  );
  const chunk = 20_000;
  for (let start = 0; start < options.count; start += chunk) {
    const end = Math.min(options.count, start + chunk);
    await query(
      db,
      `INSERT INTO app_files (app_id, path, content, file_type, size_bytes)
       SELECT app_id, path, body, file_type, octet_length(body)
         FROM (
           SELECT $1::bigint + (i / $2::int) AS app_id,
                  CASE WHEN lockfile THEN 'package-lock.json' ELSE 'src/f' || i || '.tsx' END AS path,
                  CASE WHEN lockfile THEN 'json' ELSE 'tsx' END AS file_type,
                  CASE WHEN large THEN substr(repeat(md5(i::text), (size / 32) + 1), 1, size)
                       WHEN lockfile THEN left('{' || E'\\n  "name": "app' || i || '",' || E'\\n  "packages": {\\n' ||
                                                (SELECT string_agg(${LOCK_ENTRY_SQL}, E'\\n' ORDER BY g) FROM generate_series(1, size / 170 + 1) g), size)
                       ELSE left('// ' || i || E'\\n' || (SELECT string_agg(${LINE_SQL}, E'\\n' ORDER BY g) FROM generate_series(1, size / 40 + 1) g), size)
                  END AS body
             FROM (
               SELECT i, large, lockfile,
                      CASE WHEN large THEN (1048576 + random() * ($5::float8 - 1) * 1048576)::int
                           WHEN lockfile THEN ($7::int + random() * ($8::int - $7::int))::int
                           ELSE greatest(1, exp(ln($9::float8) + $10::float8 * sqrt(-2 * ln(greatest(random(), 1e-12))) * cos(2 * pi() * random())))::int
                      END AS size
                 FROM (
                   SELECT i, random() * 100 < $4::float8 AS large, (i % $2::int = 0 AND (i / $2::int) % 2 = 0) AS lockfile
                     FROM generate_series($3::int, $6::int - 1) i
                 ) kinds
             ) sizes,
             (SELECT $11::text[] AS w, $12::text[] AS n, $13::text[] AS c) words
         ) bodies`,
      [first, perApp, start, options.largePercent, options.largeMaxMb ?? 20, end, REAL_SHAPE.lockfileMinBytes, REAL_SHAPE.lockfileMaxBytes, REAL_SHAPE.medianBytes, REAL_SHAPE.sigma, WORDS, NAMES, CLASSES],
    );
  }
  const [totals] = await query<{ rows: number; bytes: number }>(db, 'SELECT count(*)::float8 AS rows, coalesce(sum(octet_length(content)), 0)::float8 AS bytes FROM app_files');
  return totals;
}

/**
 * The apps' history, as real apps have it: 3 to 10 versions an app, each with a full snapshot of the app's files
 * (the plan's files_snapshot), a few files edited between one version and the next (about one in twenty, each
 * edit a line added), and a version-file row for each file a version created or edited. Snapshots are about
 * three quarters of the bytes, as measured on real apps.
 */
export async function seedVersions(db: Db): Promise<{ versions: number; snapshotBytes: number; versionFiles: number }> {
  await query(
    db,
    `INSERT INTO app_versions (app_id, version_number, changelog, files_snapshot, environment, created_at)
     SELECT a.app_id, '1.' || v || '.0', CASE WHEN v = 0 THEN 'Initial generation' ELSE 'Edited files' END,
            (SELECT json_object_agg(f.path, f.content || (SELECT coalesce(string_agg(E'\\n// edit ' || e, '' ORDER BY e), '')
                                                            FROM generate_series(1, v) e WHERE abs(hashtext(f.path || ':' || e)) % 20 = 0))::text
               FROM app_files f WHERE f.app_id = a.app_id),
            'production', now() - make_interval(days => 10 - v)
       FROM (SELECT DISTINCT app_id FROM app_files) a, generate_series(0, 2 + (a.app_id % 8)::int) v`,
  );
  await query(
    db,
    `INSERT INTO app_version_files (app_version_id, app_file_id, action, content)
     SELECT ver.id, f.id, CASE WHEN v = 0 THEN 'created' ELSE 'updated' END,
            f.content || (SELECT coalesce(string_agg(E'\\n// edit ' || e, '' ORDER BY e), '') FROM generate_series(1, v) e WHERE abs(hashtext(f.path || ':' || e)) % 20 = 0)
       FROM app_versions ver
       CROSS JOIN LATERAL (SELECT split_part(ver.version_number, '.', 2)::int AS v) n
       JOIN app_files f ON f.app_id = ver.app_id
      WHERE v = 0 OR abs(hashtext(f.path || ':' || v)) % 20 = 0`,
  );
  // The app's current files are its last version's.
  await query(
    db,
    `UPDATE app_files f SET content = f.content || e.edits, size_bytes = octet_length(f.content || e.edits)
       FROM (SELECT f2.id, string_agg(E'\\n// edit ' || e, '' ORDER BY e) AS edits
               FROM app_files f2, generate_series(1, 2 + (f2.app_id % 8)::int) e
              WHERE abs(hashtext(f2.path || ':' || e)) % 20 = 0 GROUP BY f2.id) e
      WHERE f.id = e.id`,
  );
  const [totals] = await query<{ versions: number; snapshot_bytes: number; version_files: number }>(
    db,
    `SELECT (SELECT count(*) FROM app_versions)::float8 AS versions, (SELECT coalesce(sum(octet_length(files_snapshot)), 0) FROM app_versions)::float8 AS snapshot_bytes,
            (SELECT count(*) FROM app_version_files)::float8 AS version_files`,
  );
  return { versions: totals.versions, snapshotBytes: totals.snapshot_bytes, versionFiles: totals.version_files };
}
