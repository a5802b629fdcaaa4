#!/usr/bin/env node
// The CLI's entry: runs the compiled JavaScript in dist/ (built by `npm run build`, shipped in the package).
import module from 'node:module';
import v8 from 'node:v8';

// Node 22.1+ caches compiled code between runs; on older lines this is a no-op.
module.enableCompileCache?.();
// Heap sizing for a process whose garbage is short-lived and whose live set is small (docs/performance.md):
// V8 would let the old generation grow to four times what survived its last full collection, and the young
// generation to 32 MB, on a machine with memory to spare, which is all peak RSS and no speed here. The
// heap grows by a quarter of the live set instead, and the young generation keeps its starting size.
// An operator's own setting of either (NODE_OPTIONS or node's flags) wins.
for (const flag of ['--heap-growing-percent=25', '--semi-space-growth-factor=1']) {
  const name = flag.slice(2, flag.indexOf('='));
  const given = [...process.execArgv, process.env.NODE_OPTIONS ?? ''].some((arg) => arg.includes(name) || arg.includes(name.replaceAll('-', '_')));
  if (!given) v8.setFlagsFromString(flag);
}
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
const { main } = await import('../dist/commands/main.js');
await main();
