import { createHash, type Hash } from 'node:crypto';

export function sha256Hex(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

export function md5Hex(data: Buffer | string): string {
  return createHash('md5').update(data).digest('hex');
}

export function hexToBase64(hex: string): string {
  return Buffer.from(hex, 'hex').toString('base64');
}

/** Strips the quotes S3 puts around ETags. */
export function cleanEtag(etag: string | undefined): string {
  return (etag ?? '').replace(/^W\//, '').replace(/"/g, '').toLowerCase();
}

/**
 * S3's ETag for a multipart upload: md5 of the concatenated binary part md5s, then "-" and the part count.
 * Computed while the bytes stream past, so a multipart upload can be checked without reading it back.
 */
export class MultipartEtag {
  private readonly partDigests: Buffer[] = [];
  private current: Hash = createHash('md5');
  private filled = 0;

  constructor(private readonly partSize: number) {}

  update(chunk: Buffer): void {
    let offset = 0;
    while (offset < chunk.length) {
      const take = Math.min(this.partSize - this.filled, chunk.length - offset);
      this.current.update(chunk.subarray(offset, offset + take));
      this.filled += take;
      offset += take;
      if (this.filled === this.partSize) {
        this.partDigests.push(this.current.digest());
        this.current = createHash('md5');
        this.filled = 0;
      }
    }
  }

  digest(): string {
    const parts = [...this.partDigests];
    if (this.filled > 0 || parts.length === 0) parts.push(this.current.digest());
    return `${createHash('md5').update(Buffer.concat(parts)).digest('hex')}-${parts.length}`;
  }
}
