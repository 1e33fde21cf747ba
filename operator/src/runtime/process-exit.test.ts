import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, it } from 'node:test';
import { countResources } from './process-exit.ts';

const helper = pathToFileURL(path.join(import.meta.dirname, 'process-exit.ts')).href;

/** Runs `body` in a fresh Node process after importing exitWhenDrained and pino. */
function run(body: string): { status: number | null; signal: string | null; stdout: string } {
  const script = `import { exitWhenDrained } from ${JSON.stringify(helper)};\nimport { pino } from 'pino';\nconst log = pino();\n${body}\n`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: import.meta.dirname, encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, signal: r.signal, stdout: r.stdout };
}

void describe('exitWhenDrained', () => {
  void it('a process whose loop drains ends with the code at once, without the warning', () => {
    const r = run(`setTimeout(() => undefined, 50);\nexitWhenDrained(3, log, 20_000);`);
    assert.equal(r.signal, null);
    assert.equal(r.status, 3);
    assert.doesNotMatch(r.stdout, /did not drain/);
  });

  void it('a handle left open: after the grace period it names what is open and exits with the code', () => {
    const r = run(`setInterval(() => undefined, 1000);\nexitWhenDrained(0, log, 200);`);
    assert.equal(r.signal, null);
    assert.equal(r.status, 0);
    const line = r.stdout.split('\n').find((l) => l.includes('did not drain'));
    assert.ok(line !== undefined, r.stdout);
    const entry = JSON.parse(line) as { activeResources: Record<string, number>; graceMs: number; level: number };
    assert.equal(entry.graceMs, 200);
    assert.equal(entry.level, 40, 'a warning');
    assert.ok((entry.activeResources.Timeout ?? 0) >= 1, JSON.stringify(entry.activeResources));
  });

  void it('counts resources by name', () => {
    assert.deepEqual(countResources(['TCPSocketWrap', 'Timeout', 'TCPSocketWrap']), { TCPSocketWrap: 2, Timeout: 1 });
    assert.deepEqual(countResources([]), {});
  });
});
