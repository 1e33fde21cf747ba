// A secret the operator reads once at start from a file a Secret volume mounts (the
// metrics key, the eviction webhook's token): its text with surrounding whitespace
// trimmed, or the caller's error naming the file.
import { readFileSync } from 'node:fs';

/** The trimmed text of `path`; `fail` makes the error for a file that cannot be read, naming `what`. */
export function readSecretFile(path: string, what: string, fail: (message: string, options: ErrorOptions) => Error): string {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch (err) {
    throw fail(`cannot read the ${what} file ${path}: ${(err as Error).message}`, { cause: err });
  }
}
