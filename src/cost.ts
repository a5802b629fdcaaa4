/**
 * R2 list prices (every one an option). Class A: writes and lists (PutObject, UploadPart, CopyObject,
 * ListObjectsV2, ...); Class B: reads (GetObject, HeadObject). DeleteObject is free. GB means 10^9 bytes.
 */
export interface Prices {
  /** The R2 storage class objects land in (`doctor` tells): Infrequent Access charges every byte read, and 30 days of storage at least. */
  storageClass?: StorageClass;
  storagePerGbMonth: number;
  classAPerMillion: number;
  classBPerMillion: number;
  /** Data retrieval, $/GB read (Infrequent Access only). */
  retrievalPerGb?: number;
  /** What a GB-month of PostgreSQL storage costs, to value the database bytes saved. */
  databasePerGbMonth: number;
}

export type StorageClass = 'standard' | 'infrequent-access';
export const STORAGE_CLASSES: readonly StorageClass[] = ['standard', 'infrequent-access'];

/**
 * R2's list prices for Infrequent Access (R2 pricing; "Storage classes" in R2's buckets documentation): lower
 * storage, dearer requests, a retrieval fee on every byte read, and a 30-day minimum storage duration.
 */
export const INFREQUENT_ACCESS_PRICES = { storagePerGbMonth: 0.01, classAPerMillion: 9, classBPerMillion: 0.9, retrievalPerGb: 0.01, minimumDays: 30 };

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

/** What keeping `bytes` in PostgreSQL costs a month, at --price-database. */
export function databaseCost(bytes: number, prices: Prices): number {
  return (bytes / GB) * prices.databasePerGbMonth;
}

export function classACost(requests: number, prices: Prices): number {
  return (requests / 1e6) * prices.classAPerMillion;
}

export function classBCost(requests: number, prices: Prices): number {
  return (requests / 1e6) * prices.classBPerMillion;
}

/** What reading `bytes` back costs in retrieval fees (nothing in the Standard class). */
export function retrievalCost(bytes: number, prices: Prices): number {
  return (bytes / GB) * (prices.retrievalPerGb ?? 0);
}
