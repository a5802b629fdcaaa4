import pg from 'pg';

/**
 * Decides where the tests' databases live: TEST_DATABASE_URL, else the PostgreSQL at 127.0.0.1:5432, else
 * (a machine with no PostgreSQL at all) an embedded PGlite per test file. PGlite runs one transaction at a
 * time, so the suites that need real concurrency say so and do not run there.
 */
export default async function setup(): Promise<void> {
  if (process.env.OVERSKILL_TEST_PGLITE === '1') {
    announce('OVERSKILL_TEST_PGLITE=1');
    return;
  }
  const url = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.end();
  } catch (error) {
    if (process.env.TEST_DATABASE_URL) throw new Error(`TEST_DATABASE_URL is set but unreachable: ${(error as Error).message}`);
    process.env.OVERSKILL_TEST_PGLITE = '1';
    announce(`no PostgreSQL at ${new URL(url).host} (${(error as Error).message})`);
  }
}

function announce(reason: string): void {
  process.stderr.write(
    `\nTests run on embedded PGlite: ${reason}.\n` +
      'PGlite runs one transaction at a time and has no other sessions to kill, so these need a real PostgreSQL and do not run here:\n' +
      '  many workers (test/many-workers.test.ts), resilience (test/resilience.test.ts), run control (test/run-control.test.ts),\n' +
      '  and invariant 4 (a kill between upload and flip, test/invariants.test.ts), whose takeover needs one session per connection.\n' +
      'Set TEST_DATABASE_URL or start PostgreSQL on 127.0.0.1:5432 to run them.\n\n',
  );
}
