import { UsageError } from '../errors.ts';

/**
 * A run's life. Moves not listed here are refused:
 *   running → pausing → paused → running (resume), running/pausing/paused → cancelling → cancelled,
 *   running/pausing → succeeded | failed (the work ran out), and any live state → interrupted when every
 *   worker of the run is gone (their leases expired after a crash or a kill) or was stopped by
 *   a signal.
 */
export const RUN_STATES = ['running', 'pausing', 'paused', 'cancelling', 'cancelled', 'succeeded', 'failed', 'interrupted'] as const;
export type RunState = (typeof RUN_STATES)[number];

export const LIVE_STATES: readonly RunState[] = ['running', 'pausing', 'paused', 'cancelling'];
export const FINAL_STATES: readonly RunState[] = ['cancelled', 'succeeded', 'failed', 'interrupted'];

const MOVES: Record<RunState, readonly RunState[]> = {
  running: ['pausing', 'cancelling', 'succeeded', 'failed', 'interrupted'],
  pausing: ['paused', 'running', 'cancelling', 'succeeded', 'failed', 'interrupted'],
  paused: ['running', 'cancelling', 'interrupted'],
  cancelling: ['cancelled', 'interrupted'],
  cancelled: [],
  succeeded: [],
  failed: [],
  interrupted: [],
};

export function canMove(from: RunState, to: RunState): boolean {
  return MOVES[from].includes(to);
}

/** The states a run may be in for a move to `to`. */
export function statesAllowing(to: RunState): RunState[] {
  return RUN_STATES.filter((from) => canMove(from, to));
}

export function isLive(state: RunState): boolean {
  return LIVE_STATES.includes(state);
}

/** A move the state machine does not allow (pausing a finished run, resuming a cancelled one, ...). */
export class IllegalRunMoveError extends UsageError {
  constructor(
    readonly runId: string,
    readonly from: RunState,
    readonly to: RunState,
  ) {
    super(`Run ${runId} is ${from}: it cannot become ${to}${FINAL_STATES.includes(from) ? ' (it has ended; start a new run instead)' : ''}.`);
  }
}
