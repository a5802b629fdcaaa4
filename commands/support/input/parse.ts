import { InvalidArgumentError } from 'commander';

/** Strict flag parsers: a bad number is a usage error naming the flag's rule, never NaN passed along. */
export function integer(options: { min?: number; max?: number } = {}) {
  const min = options.min ?? 1;
  const max = options.max ?? Number.MAX_SAFE_INTEGER;
  return (value: string): number => {
    if (!/^[0-9]+$/.test(value.trim())) throw new InvalidArgumentError(`expected a whole number${min > 0 ? ` of at least ${min}` : ''}, got "${value}".`);
    const parsed = Number(value.trim());
    if (!Number.isSafeInteger(parsed) || parsed < min || parsed > max) throw new InvalidArgumentError(`expected a whole number from ${min} to ${max}, got "${value}".`);
    return parsed;
  };
}

export function decimal(options: { min?: number; max?: number; exclusiveMin?: boolean } = {}) {
  const min = options.min ?? 0;
  const max = options.max ?? Number.MAX_VALUE;
  return (value: string): number => {
    if (!/^[0-9]+(\.[0-9]+)?$/.test(value.trim())) throw new InvalidArgumentError(`expected a number, got "${value}".`);
    const parsed = Number(value);
    if (!Number.isFinite(parsed) || parsed > max || parsed < min || (options.exclusiveMin && parsed === min)) {
      throw new InvalidArgumentError(`expected a number ${options.exclusiveMin ? 'above' : 'from'} ${min}${max < Number.MAX_VALUE ? ` to ${max}` : ''}, got "${value}".`);
    }
    return parsed;
  };
}

/** Percentages: 10 or 10% (as operators write them), above 0 and at most 100. */
export function percent() {
  const number = decimal({ min: 0, max: 100, exclusiveMin: true });
  return (value: string): number => {
    const trimmed = value.trim();
    try {
      return number(trimmed.endsWith('%') ? trimmed.slice(0, -1).trim() : trimmed);
    } catch {
      throw new InvalidArgumentError(`expected a percentage above 0 and at most 100, like 10 or 10%, got "${value}".`);
    }
  };
}

const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kb: 1000, kib: 1024, m: 1024 ** 2, mb: 1e6, mib: 1024 ** 2, g: 1024 ** 3, gb: 1e9, gib: 1024 ** 3 };

/** Byte sizes: 1024, 10KiB, 8MiB, 1.5MB. */
export function byteSize(options: { min?: number } = {}) {
  const min = options.min ?? 0;
  return (value: string): number => {
    const match = /^([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)$/.exec(value.trim());
    const unit = match ? SIZE_UNITS[match[2].toLowerCase()] : undefined;
    if (!match || unit === undefined) throw new InvalidArgumentError(`expected a size like 1024, 10KiB or 8MiB, got "${value}".`);
    const bytes = Math.round(Number(match[1]) * unit);
    if (!Number.isSafeInteger(bytes) || bytes < min) throw new InvalidArgumentError(`expected a size of at least ${min} bytes, got "${value}".`);
    return bytes;
  };
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, min: 60_000, h: 3_600_000, d: 86_400_000 };

/** Durations: 24h, 30m, 90s, 2d. */
export function duration(value: string): number {
  // Zero needs no unit.
  if (/^0+(?:\.0+)?$/.test(value.trim())) return 0;
  const match = /^([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|min|h|d)$/.exec(value.trim());
  if (!match) throw new InvalidArgumentError(`expected a duration like 24h, 30m or 90s, got "${value}".`);
  return Math.round(Number(match[1]) * DURATION_UNITS[match[2]]);
}

/** A database id: digits only (hostile values never reach SQL, and are refused early with a clear word). */
export function id(value: string): string {
  const trimmed = value.trim();
  if (!/^[0-9]{1,19}$/.test(trimmed) || BigInt(trimmed) > 9223372036854775807n || BigInt(trimmed) === 0n) {
    throw new InvalidArgumentError(`expected a positive integer id, got "${value}".`);
  }
  return String(BigInt(trimmed));
}

export function collectIds(value: string, previous: string[] = []): string[] {
  const ids = value.split(',').map((part) => id(part));
  return [...previous, ...ids];
}

export function shard(value: string): { index: number; count: number } {
  const match = /^([0-9]+)\/([0-9]+)$/.exec(value.trim());
  if (!match) throw new InvalidArgumentError(`expected I/N (e.g. 0/4), got "${value}".`);
  const index = Number(match[1]);
  const count = Number(match[2]);
  if (count < 1 || count > 10_000 || index >= count) throw new InvalidArgumentError(`expected I/N with 0 <= I < N <= 10000, got "${value}".`);
  return { index, count };
}
