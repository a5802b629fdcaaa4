import { userInfo } from 'node:os';
import { UsageError } from '../errors.ts';
import { redact } from '../secrets.ts';
import type { RowFilter } from '../sql/filters.ts';
import type { RunRow } from '../sql/runs.ts';

/** Which rows a run works on, as far as conflicts between runs are concerned. */
export interface RunScope {
  tables: string[];
  appIds?: string[];
  rolloutPercent?: number;
  shard?: { index: number; count: number };
  /** migrate only: the key layout its objects are written under. */
  keyLayout?: string;
}

/** Flags whose values are secrets or carry them: never stored, only their presence. */
const SECRET_FLAGS = /^--(database-url|secret|password|access-key|token|.*secret.*|.*password.*)$/i;

/**
 * The command line as it may be stored and shown: values of secret-bearing flags masked, credentials in any
 * URL masked, and every secret the process learned (from flags, environment or .env) scrubbed.
 */
export function maskArguments(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const eq = arg.indexOf('=');
    const flag = arg.startsWith('--') && eq > 0 ? arg.slice(0, eq) : arg;
    if (SECRET_FLAGS.test(flag)) {
      out.push(eq > 0 && arg.startsWith('--') ? `${flag}=***` : arg);
      if (eq < 0 && i + 1 < argv.length) {
        out.push('***');
        i++;
      }
      continue;
    }
    out.push(redact(arg).replace(/([a-z][a-z0-9+.-]*:\/\/[^:/@\s]*):[^@\s]*@/gi, '$1:***@'));
  }
  return out;
}

/**
 * Processes started with the same command and the same choice of rows (apart from --shard, and the pace
 * flags, which may differ per process) join one run instead of each starting their own.
 */
export function runIdentity(command: string, scope: RunScope, extra: Record<string, unknown> = {}): string {
  const { shard: _shard, ...rest } = scope;
  const canonical = { command, ...rest, tables: [...scope.tables].sort(), appIds: scope.appIds ? [...scope.appIds].sort() : undefined, ...extra };
  return JSON.stringify(canonical, Object.keys(canonical).sort());
}

export function scopeOf(tables: string[], filter: RowFilter, keyLayout?: string): RunScope {
  return { tables, appIds: filter.appIds?.length ? filter.appIds : undefined, rolloutPercent: filter.rolloutPercent, shard: filter.shard, keyLayout };
}

/** Whether two runs could touch the same row (conservative: when unsure, they overlap). */
export function scopesOverlap(a: RunScope, b: RunScope): boolean {
  if (!a.tables.some((table) => b.tables.includes(table))) return false;
  if (a.appIds && b.appIds && !a.appIds.some((id) => b.appIds!.includes(id))) return false;
  if (a.shard && b.shard && a.shard.count === b.shard.count && a.shard.index !== b.shard.index) return false;
  return true;
}

/** Commands whose runs must not overlap a running migrate (they move the same rows the other way). */
const OPPOSED: Record<string, string[]> = {
  migrate: ['rollback', 'finalize'],
  rollback: ['migrate'],
  finalize: ['migrate'],
};

/** A run that must not start while another is working; exit 2 unless --force. */
export class RunConflictError extends UsageError {}

/** The live run a new one would collide with, with the sentence that says so; undefined when none. */
export function findConflict(command: string, scope: RunScope, live: RunRow[]): { run: RunRow; sentence: string } | undefined {
  for (const run of live) {
    if (run.live_workers === 0) continue;
    const other = run.scope as unknown as RunScope;
    const who = `run ${run.id} (${run.command} by ${run.operator} on ${run.host}, pid ${run.pid}, started ${run.started_at.toISOString()}, ${run.state})`;
    if (OPPOSED[command]?.includes(run.command) && scopesOverlap(scope, other)) {
      return {
        run,
        sentence: `Refusing to start ${command}: ${who} is working on overlapping rows (${describeScope(other)}). Wait for it to end, cancel it with \`overskill-storage cancel ${run.id}\`, or pass --force.`,
      };
    }
    if (command === 'migrate' && run.command === 'migrate' && scope.keyLayout && other.keyLayout && scope.keyLayout !== other.keyLayout) {
      return {
        run,
        sentence: `Refusing to start migrate with the ${scope.keyLayout} key layout: ${who} writes the ${other.keyLayout} layout. One layout at a time; pass --force to start anyway.`,
      };
    }
  }
  return undefined;
}

export function describeScope(scope: RunScope): string {
  const parts = [scope.tables.join(', ')];
  parts.push(scope.appIds ? `apps ${scope.appIds.join(', ')}` : 'all apps');
  if (scope.rolloutPercent !== undefined) parts.push(`rollout ${scope.rolloutPercent}%`);
  if (scope.shard) parts.push(`shard ${scope.shard.index}/${scope.shard.count}`);
  return parts.join('; ');
}

/** `--operator`, else the OS user. */
export function currentOperator(spec: { operator?: string }): string {
  if (spec.operator) return spec.operator;
  try {
    return userInfo().username;
  } catch {
    return process.env.USER ?? 'unknown';
  }
}

