import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** This package's version, from its package.json: found by walking up, so sources and the build agree. */
export function packageVersion(): string {
  let directory = dirname(fileURLToPath(import.meta.url));
  for (let depth = 0; depth < 5; depth++) {
    try {
      const manifest = JSON.parse(readFileSync(join(directory, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (manifest.name === 'overskill-storage' && manifest.version) return manifest.version;
    } catch {
      // not here; one level up
    }
    directory = dirname(directory);
  }
  return '0.0.0';
}
