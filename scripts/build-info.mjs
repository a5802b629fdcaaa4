// Records what was built, for `overskill-storage --version`: the commit (when built from a git checkout) and when.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';

let commit = null;
try {
  commit = execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  if (dirty) commit += '+changes';
} catch {
  // not a git checkout (an unpacked tarball): the build is named by its date alone
}
mkdirSync('dist', { recursive: true });
writeFileSync('dist/build-info.json', `${JSON.stringify({ commit, builtAt: new Date().toISOString() })}\n`);
