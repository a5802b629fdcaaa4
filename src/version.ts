import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** This package's root and manifest: found by walking up, so sources and the build agree. */
function packageRoot(): { directory: string; version: string } | undefined {
  let directory = dirname(fileURLToPath(import.meta.url));
  for (let depth = 0; depth < 5; depth++) {
    try {
      const manifest = JSON.parse(readFileSync(join(directory, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (manifest.name === 'overskill-storage' && manifest.version) return { directory, version: manifest.version };
    } catch {
      // not here; one level up
    }
    directory = dirname(directory);
  }
  return undefined;
}

/** This package's version, from its package.json. */
export function packageVersion(): string {
  return packageRoot()?.version ?? '0.0.0';
}

/**
 * What `--version` says: the version, the build (commit and date, written by `npm run build`) and the
 * runtime, so a report of a problem names exactly what ran.
 */
export function versionReport(): string {
  const root = packageRoot();
  let build = 'from source (not built)';
  try {
    if (root && fileURLToPath(import.meta.url).includes(`${join(root.directory, 'dist')}`)) {
      const info = JSON.parse(readFileSync(join(root.directory, 'dist', 'build-info.json'), 'utf8')) as { commit?: string | null; builtAt?: string };
      build = [info.commit ? `commit ${info.commit}` : '', info.builtAt ? `built ${info.builtAt.slice(0, 19).replace('T', ' ')} UTC` : ''].filter(Boolean).join(', ') || 'unknown';
    }
  } catch {
    build = 'unknown (no build record)';
  }
  return [`overskill-storage ${root?.version ?? '0.0.0'}`, `build:   ${build}`, `runtime: node ${process.version} on ${process.platform} ${process.arch}`].join('\n');
}
