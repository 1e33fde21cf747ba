// runPlugin end to end without a cluster: what a user sees on stdout/stderr and the
// exit code for help, bad command lines, a missing kubeconfig and an unreachable server.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { EXIT } from './errors.ts';
import { PLUGIN_VERSION, runPlugin } from './plugin.ts';

async function run(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (c: Buffer) => (out += c.toString()));
  stderr.on('data', (c: Buffer) => (err += c.toString()));
  const code = await runPlugin(argv, { stdin: new PassThrough(), stdout, stderr });
  return { code, stdout: out, stderr: err };
}

void describe('runPlugin', () => {
  let dir: string;
  let unreachable: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'kv-plugin-run-'));
    unreachable = path.join(dir, 'kubeconfig');
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    await writeFile(unreachable, JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      'current-context': 'x',
      clusters: [{ name: 'c', cluster: { server: 'https://127.0.0.1:1', 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'u', user: { token: 't' } }],
      contexts: [{ name: 'x', context: { cluster: 'c', user: 'u', namespace: 'prod' } }],
    }));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  void it('help goes to stdout with exit 0', async () => {
    const r = await run(['--help']);
    assert.equal(r.code, EXIT.ok);
    assert.match(r.stdout, /^kubectl keyvirt: run, reach and move KeyVirt virtual machines\./);
    assert.equal(r.stderr, '');
    const verb = await run(['migrate', '-h']);
    assert.match(verb.stdout, /^Usage: kubectl keyvirt migrate VM \[flags\]$/m);
  });

  void it('a bad command line names the word and points at the help, exit 2', async () => {
    const r = await run(['pause', 'vm', '--force']);
    assert.equal(r.code, EXIT.usage);
    assert.equal(r.stderr, 'error: unknown flag --force for "pause"\nSee "kubectl keyvirt pause --help".\n');
    assert.equal(r.stdout, '');
  });

  void it('version --client needs no cluster', async () => {
    const r = await run(['version', '--client']);
    assert.equal(r.code, EXIT.ok);
    assert.equal(r.stdout, `Plugin version: ${PLUGIN_VERSION}\n`);
  });

  void it('a missing kubeconfig is named, exit 1', async () => {
    const r = await run(['--kubeconfig', path.join(dir, 'nope'), 'pause', 'vm']);
    assert.equal(r.code, EXIT.failure);
    assert.match(r.stderr, /^error: --kubeconfig .*\/nope: no such file$/m);
  });

  void it('an unreachable API server is named with its address, exit 6', async () => {
    const r = await run(['--kubeconfig', unreachable, 'start', 'web-1']);
    assert.equal(r.code, EXIT.unreachable, r.stderr);
    assert.match(r.stderr, /^error: cannot reach the API server at https:\/\/127\.0\.0\.1:1/m);
    const stream = await run(['--kubeconfig', unreachable, 'console', 'web-1']);
    assert.equal(stream.code, EXIT.unreachable, stream.stderr);
    assert.equal(stream.stderr, 'error: cannot reach the API server at https://127.0.0.1:1: connect ECONNREFUSED 127.0.0.1:1\n');
  });
});
