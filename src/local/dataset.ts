import pg from 'pg';

/**
 * A realistic OverSkill dataset, shaped like the files of real web apps (create-vite, create-next-app,
 * shadcn-style component kits and their lockfiles, measured on 13,784 files of 150 apps): 23 to 156 files per
 * app, sizes log-normal around a 1.2 KB median (45% under 1 KiB, 52% from 1 to 10 KiB, 3% above; p99 near
 * 19 KB), an npm lockfile of 30-200 KB in half the apps, and text that PostgreSQL's TOAST compresses about 2-3x, as
 * it does real sources. Every version carries a full snapshot, with a few files edited between versions, so
 * snapshots hold most of the bytes. A few files of several MB can be added. Deterministic for a given seed.
 */
export interface DatasetOptions {
  apps: number;
  /** The mean number of files per app (each app gets from 0.27x to 1.8x of it: 23-156 around 85). */
  filesPerApp: number;
  /** Files of several MB, spread over the dataset. */
  largeFiles: number;
  largeFileBytes?: number;
  seed?: number;
  /** Versions per app, each with a full snapshot: a range (the real apps had 3-10), or one number. */
  versionsPerApp?: number | [number, number];
}

export interface DatasetSummary {
  apps: number;
  files: number;
  fileBytes: number;
  versions: number;
  snapshotBytes: number;
  versionFiles: number;
}

export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A web-app file's size as first generated: log-normal around a 1,100-byte median with sigma 1.2; the edits
 * of later versions bring the current files to the measured shape (median 1.2 KB, 45% under 1 KiB).
 */
export function appFileSize(random: () => number): number {
  return logNormalSize(random, 1100 * Math.exp(0.72), 1.2);
}

/** Log-normal sizes with the given mean (bytes). */
export function logNormalSize(random: () => number, mean: number, sigma = 1.0): number {
  const u1 = Math.max(random(), 1e-12);
  const u2 = random();
  const normal = Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  const mu = Math.log(mean) - (sigma * sigma) / 2;
  return Math.max(1, Math.round(Math.exp(mu + sigma * normal)));
}

const DIRECTORIES = ['src/components', 'src/pages', 'src/hooks', 'src/lib', 'src/styles', 'src/components/ui', 'public', 'src/i18n'];
const EXTENSIONS: Record<string, string[]> = {
  'src/components': ['tsx'],
  'src/components/ui': ['tsx'],
  'src/pages': ['tsx'],
  'src/hooks': ['ts'],
  'src/lib': ['ts'],
  'src/styles': ['css'],
  public: ['svg', 'json'],
  'src/i18n': ['json'],
};
const WORDS = ['Button', 'Card', 'Header', 'Footer', 'Dashboard', 'Profile', 'Settings', 'Modal', 'Table', 'Chart', 'Form', 'Input', 'Layout', 'Nav', 'Pricing', 'Checkout', 'Cart', 'Search', 'Toast', 'Avatar'];
const NAMES = [
  'user', 'item', 'order', 'price', 'total', 'title', 'label', 'value', 'state', 'props', 'theme', 'color', 'size', 'variant', 'index', 'count', 'query',
  'result', 'error', 'loading', 'session', 'account', 'invoice', 'product', 'message', 'locale', 'route', 'params', 'options', 'config', 'filter', 'sort',
  'page', 'limit', 'offset', 'token', 'payload', 'schema', 'field', 'column', 'row', 'cell', 'event', 'handler', 'callback', 'ref', 'node', 'child',
];
const CLASSES = ['flex', 'grid', 'items-center', 'justify-between', 'gap-2', 'gap-4', 'p-4', 'px-3', 'py-2', 'rounded-lg', 'rounded-md', 'shadow-sm', 'text-sm', 'text-lg', 'font-medium', 'text-muted-foreground', 'bg-background', 'border', 'w-full', 'h-10', 'hover:bg-accent', 'md:grid-cols-3'];
const TEMPLATES: ((pick: <T>(list: T[]) => T, n: () => number) => string)[] = [
  (pick) => `import { ${pick(WORDS)} } from '@/components/ui/${pick(NAMES)}';`,
  (pick) => `import { use${pick(WORDS)}, use${pick(WORDS)} } from '@/hooks/use-${pick(NAMES)}';`,
  (pick) => `export function ${pick(WORDS)}${pick(WORDS)}({ ${pick(NAMES)}, ${pick(NAMES)} }: ${pick(WORDS)}Props) {`,
  (pick) => `  const [${pick(NAMES)}, set${pick(WORDS)}] = useState<${pick(WORDS)} | null>(null);`,
  (pick) => `    <div className="${pick(CLASSES)} ${pick(CLASSES)} ${pick(CLASSES)} ${pick(CLASSES)}">`,
  (pick) => `      <${pick(WORDS)} ${pick(NAMES)}={${pick(NAMES)}.${pick(NAMES)}} on${pick(WORDS)}={() => set${pick(WORDS)}(${pick(NAMES)})} />`,
  (pick, n) => `  const ${pick(NAMES)} = ${pick(NAMES)}.filter((${pick(NAMES)}) => ${pick(NAMES)}.${pick(NAMES)} > ${n()});`,
  (pick, n) => `  if (!${pick(NAMES)}?.${pick(NAMES)}) return { ${pick(NAMES)}: ${n()}, ${pick(NAMES)}: '${pick(NAMES)}-${n().toString(36)}' };`,
  (pick, n) => `.${pick(NAMES)}-${pick(NAMES)} { margin: ${n() % 48}px ${n() % 32}px; color: #${(n() * 2654435761 % 0xffffff).toString(16).padStart(6, '0')}; }`,
  (pick) => `  "${pick(NAMES)}.${pick(NAMES)}": "${pick(WORDS)} ${pick(NAMES)} — ${pick(['schön', 'ようこそ', 'bienvenue', 'hello', 'olá'])}",`,
  (pick) => `  // ${pick(WORDS)}: keep the ${pick(NAMES)} in sync with the ${pick(NAMES)} before ${pick(NAMES)} changes`,
  () => '}',
  () => '  );',
];

/** Source-like text of about `bytes` bytes: lines of the shapes app code has, with other names and numbers in each. */
function contentOf(random: () => number, bytes: number): string {
  const pick = <T,>(list: T[]): T => list[Math.floor(random() * list.length)];
  const n = () => Math.floor(random() * 10_000);
  const parts: string[] = [];
  let length = 0;
  while (length < bytes) {
    const line = pick(TEMPLATES)(pick, n);
    parts.push(line);
    length += Buffer.byteLength(line, 'utf8') + 1;
  }
  return trimToBytes(parts.join('\n'), bytes);
}

/** An npm lockfile of about `bytes` bytes: one entry per package, each with its version, tarball address and sha512 integrity. */
function lockfileOf(random: () => number, bytes: number): string {
  const hex = (length: number) => Array.from({ length }, () => Math.floor(random() * 16).toString(16)).join('');
  const base64 = (length: number) => Buffer.from(hex(length * 2), 'hex').toString('base64').slice(0, length);
  const lines = ['{', '  "name": "app",', '  "lockfileVersion": 3,', '  "requires": true,', '  "packages": {'];
  let length = lines.join('\n').length;
  while (length < bytes) {
    const name = `${random() < 0.3 ? `@${NAMES[Math.floor(random() * NAMES.length)]}/` : ''}${NAMES[Math.floor(random() * NAMES.length)]}-${NAMES[Math.floor(random() * NAMES.length)]}`;
    const version = `${Math.floor(random() * 9)}.${Math.floor(random() * 30)}.${Math.floor(random() * 20)}`;
    const entry = `    "node_modules/${name}": {\n      "version": "${version}",\n      "resolved": "https://registry.example/${name}/-/${name.split('/').pop()}-${version}.tgz",\n      "integrity": "sha512-${base64(86)}==",\n      "license": "MIT"${random() < 0.4 ? ',\n      "dev": true' : ''}\n    },`;
    lines.push(entry);
    length += entry.length + 1;
  }
  lines.push('  }', '}');
  return trimToBytes(lines.join('\n'), bytes);
}

function trimToBytes(text: string, bytes: number): string {
  // Trim to the byte budget on a character boundary.
  let out = text;
  while (Buffer.byteLength(out, 'utf8') > bytes) out = out.slice(0, Math.max(0, out.length - Math.max(1, Buffer.byteLength(out, 'utf8') - bytes)));
  return out;
}

function pathsForApp(random: () => number, count: number): string[] {
  const fixed = ['index.html', 'package.json', ...(random() < 0.5 ? ['package-lock.json'] : []), 'vite.config.ts', 'src/main.tsx', 'src/App.tsx', 'README.md', 'src/components/My Button.tsx', 'src/i18n/übersetzung.json'];
  const paths = new Set(fixed.slice(0, Math.min(count, fixed.length)));
  let n = 0;
  while (paths.size < count) {
    const directory = DIRECTORIES[Math.floor(random() * DIRECTORIES.length)];
    const extensions = EXTENSIONS[directory];
    const extension = extensions[Math.floor(random() * extensions.length)];
    paths.add(`${directory}/${WORDS[Math.floor(random() * WORDS.length)]}${n++}.${extension}`);
  }
  return [...paths];
}

/** Seeds the dataset through any PostgreSQL connection (tables must exist). Rows are inserted in batches. */
export async function seedDataset(client: pg.Client | pg.PoolClient, options: DatasetOptions): Promise<DatasetSummary> {
  const random = mulberry32(options.seed ?? 42);
  const [fewestVersions, mostVersions] = Array.isArray(options.versionsPerApp) ? options.versionsPerApp : [options.versionsPerApp ?? 3, options.versionsPerApp ?? 3];
  const largeBytes = options.largeFileBytes ?? 3 * 1024 * 1024;
  const totalFiles = options.apps * options.filesPerApp;
  const largeEvery = options.largeFiles > 0 ? Math.max(1, Math.floor(totalFiles / options.largeFiles)) : Number.POSITIVE_INFINITY;
  const summary: DatasetSummary = { apps: 0, files: 0, fileBytes: 0, versions: 0, snapshotBytes: 0, versionFiles: 0 };
  let fileIndex = 0;
  for (let app = 0; app < options.apps; app++) {
    const appRow = await client.query('INSERT INTO apps (name) VALUES ($1) RETURNING id', [`${WORDS[app % WORDS.length]} App ${app + 1}`]);
    const appId = appRow.rows[0].id as string;
    summary.apps++;
    // 0.27x to 1.8x the mean (the real apps: 23 to 156 files around 85), never fewer than one.
    const fileCount = Math.max(1, Math.round(options.filesPerApp * (0.27 + random() * 1.53)));
    const versionsPerApp = Math.max(1, fewestVersions + Math.floor(random() * (mostVersions - fewestVersions + 1)));
    const paths = pathsForApp(random, fileCount);
    const contents = paths.map((path) => {
      fileIndex++;
      const large = fileIndex % largeEvery === 0 && summary.files < totalFiles;
      if (large) return contentOf(random, largeBytes + Math.floor(random() * largeBytes));
      if (path === 'package-lock.json') return lockfileOf(random, 30_000 + Math.floor(random() * 170_000));
      return contentOf(random, appFileSize(random));
    });
    const files = await client.query(
      `INSERT INTO app_files (app_id, path, content, file_type, size_bytes, is_entry_point)
       SELECT $1::bigint, p, c, substring(p from '\\.([a-z]+)$'), octet_length(c), p IN ('index.html', 'src/main.tsx')
         FROM unnest($2::text[], $3::text[]) AS u(p, c) RETURNING id, path`,
      [appId, paths, contents],
    );
    summary.files += paths.length;
    summary.fileBytes += contents.reduce((sum, c) => sum + Buffer.byteLength(c, 'utf8'), 0);
    const idByPath = new Map<string, string>(files.rows.map((row: { id: string; path: string }) => [row.path, row.id]));
    // History: v1 created everything; each later version edits a few files; every version carries a full snapshot.
    const state = new Map(paths.map((path, i) => [path, contents[i]]));
    for (let v = 0; v < versionsPerApp; v++) {
      const changed: { path: string; content: string; action: string }[] = [];
      if (v === 0) {
        for (const path of paths) changed.push({ path, content: state.get(path)!, action: 'created' });
      } else {
        const edits = Math.max(1, Math.floor(paths.length / 20));
        for (let e = 0; e < edits; e++) {
          const path = paths[Math.floor(random() * paths.length)];
          if (Buffer.byteLength(state.get(path)!, 'utf8') > 1024 * 1024) continue;
          const content = `${state.get(path)}\n${contentOf(random, 40 + Math.floor(random() * 400))}`;
          state.set(path, content);
          changed.push({ path, content, action: 'updated' });
        }
      }
      const snapshot = JSON.stringify(Object.fromEntries([...state].filter(([, c]) => Buffer.byteLength(c, 'utf8') < 1024 * 1024)));
      const version = await client.query(
        `INSERT INTO app_versions (app_id, version_number, changelog, files_snapshot, environment, created_at)
         VALUES ($1, $2, $3, $4, 'production', now() - make_interval(days => $5)) RETURNING id`,
        [appId, `1.${v}.0`, v === 0 ? 'Initial generation' : `Edited ${changed.length} files`, snapshot, versionsPerApp - v],
      );
      summary.versions++;
      if (snapshot) summary.snapshotBytes += Buffer.byteLength(snapshot, 'utf8');
      // Version-file rows keep the content each version wrote, the first version's creations included.
      const rows = changed;
      await client.query(
        `INSERT INTO app_version_files (app_version_id, app_file_id, action, content)
         SELECT $1::bigint, f, a, c FROM unnest($2::bigint[], $3::text[], $4::text[]) AS u(f, a, c)`,
        [version.rows[0].id, rows.map((r) => idByPath.get(r.path)), rows.map((r) => r.action), rows.map((r) => r.content)],
      );
      summary.versionFiles += rows.length;
    }
    // The app's current files are the last version's.
    const edited = [...state].filter(([path, content]) => content !== contents[paths.indexOf(path)]);
    if (edited.length) {
      await client.query(
        `UPDATE app_files f SET content = u.c, size_bytes = octet_length(u.c) FROM unnest($1::bigint[], $2::text[]) AS u(id, c) WHERE f.id = u.id`,
        [edited.map(([path]) => idByPath.get(path)), edited.map(([, content]) => content)],
      );
    }
  }
  return summary;
}
