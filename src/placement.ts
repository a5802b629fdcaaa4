/**
 * The placement policy: where a content of a given byte size lives. This module alone knows the thresholds.
 *
 *   size <  hybridMin             -> database (always)
 *   hybridMin <= size <= r2Above  -> hybrid (DB + R2), after migrate and after finalize
 *   size >  r2Above               -> hybrid after migrate, r2 (DB content NULL) after finalize
 */
/** The values of the plan's storage_location / storage_strategy columns, by name. */
export const LOCATION = { database: 'database', hybrid: 'hybrid', r2: 'r2' } as const;
export type Location = (typeof LOCATION)[keyof typeof LOCATION];
export const LOCATIONS: readonly Location[] = [LOCATION.database, LOCATION.hybrid, LOCATION.r2];

/** A row R2 holds the content of: hybrid (a copy) or r2 (the only copy). */
export function inR2(location: string | null): boolean {
  return location === LOCATION.hybrid || location === LOCATION.r2;
}

export interface PlacementPolicy {
  /** Smallest size (bytes) that goes to R2 at all. Default 1 KiB. */
  hybridMin: number;
  /** Sizes strictly above this lose their database copy at finalize. Default 10 KiB. */
  r2Above: number;
}

export const DEFAULT_POLICY: PlacementPolicy = { hybridMin: 1024, r2Above: 10 * 1024 };

export type Phase = 'migrate' | 'finalize';

export function placementFor(size: number, phase: Phase, policy: PlacementPolicy = DEFAULT_POLICY): Location {
  if (size < policy.hybridMin) return 'database';
  if (phase === 'finalize' && size > policy.r2Above) return 'r2';
  return 'hybrid';
}

export function validatePolicy(policy: PlacementPolicy): string | undefined {
  if (!Number.isSafeInteger(policy.hybridMin) || policy.hybridMin < 0) return 'the hybrid threshold must be a whole number of bytes >= 0';
  if (!Number.isSafeInteger(policy.r2Above) || policy.r2Above < policy.hybridMin) return 'the r2 threshold must be a whole number of bytes >= the hybrid threshold';
  return undefined;
}
