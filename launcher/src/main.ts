#!/usr/bin/env node
// The launcher's entry point. Node's compile cache (in NODE_COMPILE_CACHE, or the
// system temp dir) is enabled before the launcher's modules load, which saves most of
// their type-stripping and compilation on every start after the first.
import module from 'node:module';

module.enableCompileCache();
await import('./launcher-main.ts');
