import type { Plan, PlanNote } from '../../../src/ops/plan.ts';
import type { ReclaimNote, ReclaimPlan } from '../../../src/ops/reclaim.ts';

/** A plan as it is shown and written as JSON: its notes in words. */
export type DescribedPlan = Omit<Plan, 'notes'> & { notes: string[] };

export function describePlan(plan: Plan): DescribedPlan {
  return { ...plan, notes: plan.notes.map(planNoteText) };
}

export function planNoteText(note: PlanNote): string {
  switch (note.note) {
    case 'infrequent-access':
      return `Infrequent Access: $${note.retrievalPerGb}/GB for every byte read back, and an object deleted within 30 days is charged for 30 days`;
    case 'migrate-never-clears':
      return 'migrate never clears database content; finalize does, after reading every copy back';
    case 'space-reusable-after-vacuum':
      return 'PostgreSQL reuses the freed space after VACUUM; the disk shrinks only after VACUUM FULL or pg_repack';
    case 'purge-after-verify':
      return '--purge deletes each object only after its row has been rolled back and verified';
    case 'purge-ignored-with-keep-hybrid':
      return '--purge has no effect with --keep-hybrid: objects stay referenced';
    case 'hybrid-band-read-from-r2-only':
      return 'the hybrid band loses its database copy: those files are then read from R2 only. Run it once the app has read from R2 for a while and `verify` is clean; `reclaim` then returns the space';
    case 'store-check':
      return note.dryRun
        ? `store check: not done (a dry run writes nothing); the run first proves the store honours conditional writes, with about ${note.requests} requests on probe objects under ${note.prefix} that it deletes again, and refuses if it does not`
        : `store check first: conditional writes proven with about ${note.requests} requests under ${note.prefix} (deleted again)`;
  }
}

/** A reclaim plan as it is shown and written as JSON: its locks and notes in words. */
export type DescribedReclaimPlan = Omit<ReclaimPlan, 'notes' | 'locks'> & { locks: string; notes: string[] };

export function describeReclaimPlan(plan: ReclaimPlan): DescribedReclaimPlan {
  const locks =
    plan.locks.mode === 'offline'
      ? `ACCESS EXCLUSIVE on each table for its whole rewrite (reads and writes wait; given up after ${plan.locks.lockTimeoutMs} ms without the lock)`
      : `ACCESS EXCLUSIVE for a moment at the start and the end of each table (waiting at most ${plan.locks.waitTimeoutS} s, never killing a session); SHARE UPDATE EXCLUSIVE in between (blocks VACUUM and DDL, not the app's reads and writes)`;
  return { ...plan, locks, notes: plan.notes.map(reclaimNoteText) };
}

function reclaimNoteText(note: ReclaimNote): string {
  switch (note.note) {
    case 'vacuum-is-safe':
      return 'plain VACUUM is always safe with the app live (it makes space reusable inside the files, and returns none); reclaim returns it to the operating system';
    case 'offline-blocks-the-app':
      return 'the app cannot read or write a table while VACUUM FULL rewrites it: run --offline only in a maintenance window';
    case 'repack-never-kills':
      return "pg_repack never kills the app's sessions here (--no-kill-backend): a table whose short lock it cannot get within --wait-timeout is skipped and named";
    case 'no-superuser-check':
      return "--no-superuser-check: for managed databases whose admin role is not a superuser (pg_repack's own flag)";
    case 'waits-for-open-transactions':
      return `reclaim first waits up to ${note.waitSeconds} s for the ${note.open === 1 ? 'transaction' : `${note.open} transactions`} open now to end: rows deleted after one began stay on disk until it ends`;
  }
}
