#!/usr/bin/env node
// Entry point: loads the TypeScript sources through tsx and runs the CLI with the process's streams.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../commands/main.ts');
await main();
