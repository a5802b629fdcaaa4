#!/usr/bin/env node
// The CLI's entry: runs the compiled JavaScript in dist/ (built by `npm run build`, shipped in the package).
import module from 'node:module';

// Node 22.1+ caches compiled code between runs; on older lines this is a no-op.
module.enableCompileCache?.();
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
const { main } = await import('../dist/commands/main.js');
await main();
