import type { CommandEntry } from './support/flow/command.ts';

export type { CommandEntry, CommandFactory } from './support/flow/command.ts';

/**
 * Every command, in the order the help lists them. A command's module (and what it imports) is loaded only
 * when the command line names it, so `--version`, `--help` and one command start without parsing the other
 * eighteen: start-up is module loading, and this halves the modules loaded.
 */
export const CATALOG: readonly CommandEntry[] = [
  {
    name: 'doctor',
    usage: '',
    description:
      "Check that everything this tool relies on holds here: the database, the schema, the bucket and credentials, and the store's conditional writes (probe objects outside apps/, deleted again). Exit 1 naming what does not.",
    load: async () => (await import('./doctor.ts')).doctorCommand,
  },
  {
    name: 'schema',
    usage: '[options]',
    description:
      "Show which of the plan's Phase 1 columns and indexes are missing (exit 1 if any); --apply adds them.",
    load: async () => (await import('./schema.ts')).schemaCommand,
  },
  {
    name: 'migrate',
    usage: '[options]',
    description:
      "Upload eligible contents (files, version snapshots, version file contents) to R2, verify each upload, and mark rows hybrid. Never clears database content. Re-running resumes.",
    load: async () => (await import('./migrate.ts')).migrateCommand,
  },
  {
    name: 'verify',
    usage: '[options]',
    description:
      "Check every row stored in R2: object present, size and content match, database copy (where kept) matches content_hash, flags consistent. Exit 1 when anything is wrong.",
    load: async () => (await import('./verify.ts')).verifyCommand,
  },
  {
    name: 'finalize',
    usage: '[options]',
    description:
      "Phase 3: for hybrid rows above the r2 threshold, read the R2 copy back, verify it against content_hash and the database content, then clear the database content (r2).",
    load: async () => (await import('./finalize.ts')).finalizeCommand,
  },
  {
    name: 'rollback',
    usage: '[options]',
    description:
      "Bring contents back into the database: download each R2-only content, verify it against content_hash, write it back, and flip rows to database (or hybrid with --keep-hybrid).",
    load: async () => (await import('./rollback.ts')).rollbackCommand,
  },
  {
    name: 'report',
    usage: '[options]',
    description:
      "Bytes and counts per table and storage location, migration progress, database bytes held, freeable and saved, and R2 cost at list prices.",
    load: async () => (await import('./report.ts')).reportCommand,
  },
  {
    name: 'restore-version',
    usage: '[options] <app_id> <version>',
    description:
      "Restore an app's files to a version (an id or a version_number): shows the diff, then restores in one transaction and records a new version.",
    load: async () => (await import('./restore-version.ts')).restoreVersionCommand,
  },
  {
    name: 'cleanup',
    usage: '[options]',
    description:
      "Delete objects under apps/ that no row references and that are older than the grace period. Lists them first; deletes only when confirmed (or with --yes).",
    load: async () => (await import('./cleanup.ts')).cleanupCommand,
  },
  {
    name: 'maintain',
    usage: '[options]',
    description:
      "The plan's nightly job, as one recorded run: verify every stored row by listings, download and hash a rotating sample (every object once per 100/percent days), delete our orphans past the grace period, and keep the day's report figures for the report's history. Exit 1 naming each problem.",
    load: async () => (await import('./maintain.ts')).maintainCommand,
  },
  {
    name: 'reclaim',
    usage: '[options]',
    description:
      "Phase 3's last step: give the space finalize freed back to the operating system with the app live (pg_repack on the three tables), planned first; refuses without pg_repack, and never falls back to a blocking rewrite unless asked (--offline: VACUUM FULL with a lock timeout).",
    load: async () => (await import('./reclaim.ts')).reclaimCommand,
  },
  {
    name: 'prune-versions',
    usage: '[options]',
    description:
      "Retention of version history: delete versions both rules let go (not among each app's --keep-last newest, and older than --keep-within), with their version files and, through the guarded deletes, their objects. An app's newest version never goes; a version another table references is kept and listed; so is every version a kept snapshot-less version needs to be restored.",
    load: async () => (await import('./prune-versions.ts')).pruneVersionsCommand,
  },
  {
    name: 'export',
    usage: '[options] <app_id>',
    description:
      "Write an app's current files (or a version's) into a directory, by hybrid retrieval (database, else R2), each verified against content_hash.",
    load: async () => (await import('./export.ts')).exportCommand,
  },
  {
    name: 'cat',
    usage: '<app_id> <path>',
    description:
      "Print one app file to stdout, by hybrid retrieval, verified against content_hash when it comes from R2.",
    load: async () => (await import('./export.ts')).catCommand,
  },
  {
    name: 'status',
    usage: '[options] [run]',
    description:
      "Active runs (state, per-worker rate, progress, ETA from the recent rate, why a run waits) and the last few finished ones, from any terminal.",
    load: async () => (await import('./status.ts')).statusCommand,
  },
  {
    name: 'pause',
    usage: '[options] [runs...]',
    description:
      "Pause runs: their workers finish the batches in flight, release every claim and wait (within about a second plus one batch).",
    load: async () => (await import('./run-control.ts')).pauseCommand,
  },
  {
    name: 'resume',
    usage: '[options] [runs...]',
    description:
      "Resume paused runs (optionally with a new pace).",
    load: async () => (await import('./run-control.ts')).resumeCommand,
  },
  {
    name: 'cancel',
    usage: '[options] [runs...]',
    description:
      "Cancel runs: their workers finish the batches in flight and stop (exit 130); every row stays consistent, and a rerun continues.",
    load: async () => (await import('./run-control.ts')).cancelCommand,
  },
  {
    name: 'tune',
    usage: '[options] [runs...]',
    description:
      "Change a live run's pace without restarting it: its workers adopt the new values at their next heartbeat.",
    load: async () => (await import('./run-control.ts')).tuneCommand,
  },
  {
    name: 'demo',
    usage: '[options]',
    description:
      "Run the whole flow on an embedded PostgreSQL and a local S3 server: seed a realistic OverSkill dataset, then schema → migrate → verify → report → finalize → rollback → restore-version.",
    load: async () => (await import('./demo.ts')).demoCommand,
  },
  {
    name: 'completion',
    usage: '<shell>',
    description: 'Print a shell completion script for bash, zsh or fish (commands, options and their choices).',
    load: async () => (await import('./completion.ts')).completionCommand,
  },
];
