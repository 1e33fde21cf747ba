// A node:test reporter that writes each test file's wall time (its process, from start
// to exit, hooks included) as `seconds<TAB>path`, longest first, paths relative to the
// working directory: where a run's time goes. `hack/test.sh` adds it when
// KEYVIRT_TEST_DURATIONS names a file (ADR 0128).
import { relative, resolve } from 'node:path';
import type { TestEvent } from 'node:test/reporters';

/** One `seconds<TAB>path` line per file that completed, longest first. */
export function durationLines(durations: ReadonlyMap<string, number>): string[] {
  return [...durations.entries()]
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .map(([file, ms]) => `${(ms / 1000).toFixed(1)}\t${file}\n`);
}

export default async function* fileDurations(source: AsyncIterable<TestEvent>): AsyncGenerator<string, void> {
  const durations = new Map<string, number>();
  for await (const event of source) {
    if (event.type !== 'test:complete' || event.data.nesting !== 0 || event.data.file === undefined) continue;
    // A file's own completion: the test named by the path the runner was given.
    if (resolve(event.data.name) !== event.data.file) continue;
    durations.set(relative(process.cwd(), event.data.file), event.data.details.duration_ms);
  }
  yield* durationLines(durations);
}
