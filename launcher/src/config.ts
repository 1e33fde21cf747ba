// Loads the launcher configuration: a JSON file (path from `--config <path>` or
// KEYVIRT_LAUNCHER_CONFIG) validated with the api's LauncherConfigSchema.
import { readFile } from 'node:fs/promises';
import { LauncherConfigSchema } from './api/config.ts';
import type { LauncherConfig } from './api/config.ts';

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export function configPathFrom(argv: readonly string[], env: NodeJS.ProcessEnv): string {
  const flag = argv.indexOf('--config');
  const fromArgv = flag >= 0 ? argv[flag + 1] : argv.find((a) => a.startsWith('--config='))?.slice('--config='.length);
  const path = fromArgv ?? env.KEYVIRT_LAUNCHER_CONFIG;
  if (path === undefined || path === '') throw new ConfigError('no configuration: pass --config <path> or set KEYVIRT_LAUNCHER_CONFIG');
  return path;
}

export function parseLauncherConfig(json: unknown, source: string): LauncherConfig {
  const parsed = LauncherConfigSchema.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.map(String).join('.') || '(root)'}: ${i.message}`);
    throw new ConfigError(`invalid launcher configuration ${source}: ${issues.join('; ')}`);
  }
  return parsed.data;
}

export async function loadLauncherConfig(path: string): Promise<LauncherConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read launcher configuration ${path}: ${(err as Error).message}`, { cause: err });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`launcher configuration ${path} is not JSON: ${(err as Error).message}`, { cause: err });
  }
  return parseLauncherConfig(json, path);
}
