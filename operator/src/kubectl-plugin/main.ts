#!/usr/bin/env node
// kubectl-keyvirt: kubectl finds this executable on PATH and runs it for `kubectl keyvirt …`.
import { runPlugin } from './plugin.ts';

process.exitCode = await runPlugin(process.argv.slice(2), { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr });
