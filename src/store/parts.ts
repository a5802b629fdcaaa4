/**
 * Multipart part size: R2's (and S3's) smallest part, because every large item in flight holds about two
 * parts in memory (the one being filled, the one being sent). Larger objects get larger parts only when
 * 10,000 parts would not hold them.
 */
export const DEFAULT_PART_SIZE = 5 * 1024 * 1024;
const MAX_PARTS = 10_000;

export function partSizeFor(size: number, preferred = DEFAULT_PART_SIZE): number {
  return Math.max(preferred, Math.ceil(size / MAX_PARTS));
}
