import { query, type Db } from '../src/db.ts';

/**
 * Seeds `count` app_files rows in SQL (fast even at a million rows): sizes log-normal around `meanBytes`,
 * and `largePercent` of rows between 1 and `largeMaxMb` MB. Contents are hex text, distinct per row.
 */
export async function seedFiles(db: Db, options: { count: number; meanBytes: number; largePercent: number; largeMaxMb?: number; filesPerApp?: number }): Promise<{ rows: number; bytes: number }> {
  const perApp = options.filesPerApp ?? 85;
  const apps = Math.ceil(options.count / perApp);
  const [{ first }] = await query<{ first: string }>(
    db,
    `WITH added AS (INSERT INTO apps (name) SELECT 'bench ' || i FROM generate_series(1, $1::int) i RETURNING id) SELECT min(id) AS first FROM added`,
    [apps],
  );
  const chunk = 50_000;
  for (let start = 0; start < options.count; start += chunk) {
    const end = Math.min(options.count, start + chunk);
    await query(
      db,
      `INSERT INTO app_files (app_id, path, content, file_type, size_bytes)
       SELECT $1::bigint + (i / $2::int), 'src/f' || i || '.ts', body, 'ts', octet_length(body)
         FROM (
           SELECT i, substr(repeat(md5(i::text), (size / 32) + 1), 1, size) AS body
             FROM (
               SELECT i,
                      CASE WHEN random() * 100 < $5::float8
                           THEN (1048576 + random() * ($6::float8 - 1) * 1048576)::int
                           ELSE greatest(1, exp(ln($4::float8) - 0.405 + 0.9 * sqrt(-2 * ln(greatest(random(), 1e-12))) * cos(2 * pi() * random())))::int
                      END AS size
                 FROM generate_series($3::int, $7::int - 1) i
             ) sizes
         ) bodies`,
      [first, perApp, start, options.meanBytes, options.largePercent, options.largeMaxMb ?? 20, end],
    );
  }
  const [totals] = await query<{ rows: number; bytes: number }>(db, 'SELECT count(*)::float8 AS rows, coalesce(sum(octet_length(content)), 0)::float8 AS bytes FROM app_files');
  return totals;
}
