/**
 * How this tool tells its own objects from everyone else's. Every object it writes carries
 * `x-amz-meta-writer: overskill-storage` and the content's SHA-256; the app's Phase 1 model code
 * (`Storage::R2FileStorageService#store_file_content`) writes the same keys with no such metadata.
 * Only an object that carries the marker may be replaced or deleted by this tool, and only under a
 * condition on its ETag (see writes.ts and deletes.ts).
 */
import { CONTENT_SIZE_KEY, declaredEncoding, type ContentEncoding } from './encoding.ts';

export const WRITER_KEY = 'writer';
export const WRITER = 'overskill-storage';
/** Marks the 0-byte object a guarded delete puts in place of ours before deleting it. */
export const TOMBSTONE_KEY = 'tombstone';

export function ourMetadata(sha256: string): Record<string, string> {
  return { [WRITER_KEY]: WRITER, sha256 };
}

export function tombstoneMetadata(): Record<string, string> {
  return { [WRITER_KEY]: WRITER, [TOMBSTONE_KEY]: '1' };
}

export function writtenByUs(metadata: Record<string, string> | undefined): boolean {
  return metadata?.[WRITER_KEY] === WRITER;
}

export interface ObjectHead {
  size: number;
  etag: string;
  /** The SHA-256 recorded in metadata when the object was written (ours always has one). */
  sha256?: string;
  lastModified?: Date;
  /** Written by this tool (carries the marker). */
  ours: boolean;
  /** One of our guarded deletes' placeholders. */
  tombstone: boolean;
  /** How the stored bytes encode the content (compressed objects), and the content's own size. */
  encoding?: ContentEncoding;
  contentSize: number;
}

export function headFromMetadata(size: number, etag: string, metadata: Record<string, string> | undefined, lastModified?: Date, contentEncoding?: string): ObjectHead {
  const encoding = declaredEncoding(metadata, contentEncoding);
  const declared = Number(metadata?.[CONTENT_SIZE_KEY]);
  return {
    size,
    etag,
    sha256: metadata?.sha256,
    lastModified,
    ours: writtenByUs(metadata),
    tombstone: metadata?.[TOMBSTONE_KEY] === '1' && writtenByUs(metadata),
    encoding,
    contentSize: encoding && Number.isSafeInteger(declared) ? declared : size,
  };
}
