/** The two object key layouts (see keys.ts); a module of its own so the CLI can list them without a database driver. */
export type KeyLayout = 'path' | 'content-addressed';
export const KEY_LAYOUTS: readonly KeyLayout[] = ['path', 'content-addressed'];
