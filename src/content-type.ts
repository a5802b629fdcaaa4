const BY_EXTENSION: Record<string, string> = {
  js: 'text/javascript',
  mjs: 'text/javascript',
  cjs: 'text/javascript',
  jsx: 'text/javascript',
  ts: 'text/typescript',
  tsx: 'text/typescript',
  mts: 'text/typescript',
  css: 'text/css',
  scss: 'text/x-scss',
  html: 'text/html',
  htm: 'text/html',
  json: 'application/json',
  map: 'application/json',
  md: 'text/markdown',
  txt: 'text/plain',
  svg: 'image/svg+xml',
  xml: 'application/xml',
  yml: 'application/yaml',
  yaml: 'application/yaml',
  toml: 'application/toml',
  csv: 'text/csv',
  sh: 'text/x-shellscript',
  py: 'text/x-python',
  rb: 'text/x-ruby',
  sql: 'application/sql',
  env: 'text/plain',
};

/** Contents are TEXT columns, so every type is textual and UTF-8. */
export function contentTypeFor(path: string | null | undefined, fileType?: string | null): string {
  const fromPath = path ? /\.([A-Za-z0-9]+)$/.exec(path)?.[1]?.toLowerCase() : undefined;
  const extension = fromPath ?? fileType?.toLowerCase().replace(/^\./, '');
  const type = (extension && BY_EXTENSION[extension]) ?? 'text/plain';
  return `${type}; charset=utf-8`;
}

export const SNAPSHOT_CONTENT_TYPE = 'application/json; charset=utf-8';
