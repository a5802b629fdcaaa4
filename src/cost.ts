/**
 * R2 list prices (every one an option). Class A: writes and lists (PutObject, UploadPart, CopyObject,
 * ListObjectsV2, ...); Class B: reads (GetObject, HeadObject). DeleteObject is free. GB means 10^9 bytes.
 */
export interface Prices {
  storagePerGbMonth: number;
  classAPerMillion: number;
  classBPerMillion: number;
  /** What a GB-month of PostgreSQL storage costs, to value the database bytes saved. */
  databasePerGbMonth: number;
}

export const DEFAULT_PRICES: Prices = {
  storagePerGbMonth: 0.015,
  classAPerMillion: 4.5,
  classBPerMillion: 0.36,
  databasePerGbMonth: 0.115,
};

export const GB = 1e9;

export function storageCost(bytes: number, prices: Prices): number {
  return (bytes / GB) * prices.storagePerGbMonth;
}

export function classACost(requests: number, prices: Prices): number {
  return (requests / 1e6) * prices.classAPerMillion;
}

export function classBCost(requests: number, prices: Prices): number {
  return (requests / 1e6) * prices.classBPerMillion;
}
