import type { Output } from './output.ts';

/** What a command acts on, as every plan and prompt names it: the database, the bucket, and the rows' scope. */
export interface Target {
  /** `"test" on 127.0.0.1:5432 as postgres` */
  database: string;
  /** `"overskill-files" at abc.r2.cloudflarestorage.com`, when a bucket is configured */
  bucket?: string;
  /** `rollout 10% = 5 of 50 apps`, when the command walks a scope */
  scope?: string;
}

/** A PostgreSQL URL as an operator names the database: its name, host and port, and the user (never the password). */
export function describeDatabase(url: string): string {
  try {
    const parsed = new URL(url);
    const name = decodeURIComponent(parsed.pathname.replace(/^\//, '')) || parsed.searchParams.get('dbname') || '(default database)';
    const host = parsed.hostname || parsed.searchParams.get('host') || 'localhost';
    const user = decodeURIComponent(parsed.username) || parsed.searchParams.get('user');
    return `"${name}" on ${host}:${parsed.port || '5432'}${user ? ` as ${user}` : ''}`;
  } catch {
    return 'the configured database';
  }
}

/** A bucket as an operator names it: its name and the endpoint's host. */
export function describeBucket(bucket: string, endpoint: string): string {
  let host = endpoint;
  try {
    host = new URL(endpoint).host;
  } catch {
    // shown as configured
  }
  return `"${bucket}" at ${host}`;
}

/** The target block every plan starts with (gh-ost and terraform print the target first). */
export function renderTarget(output: Output, target: Target, options: { bucket?: boolean } = {}): void {
  const c = output.color;
  output.print(`${c.dim('Database:')} ${target.database}`);
  if (target.bucket && options.bucket !== false) output.print(`${c.dim('Bucket:  ')} ${target.bucket}`);
  if (target.scope) output.print(`${c.dim('Scope:   ')} ${target.scope}`);
}
