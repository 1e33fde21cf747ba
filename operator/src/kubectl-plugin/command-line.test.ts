import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseCommandLine, type ParsedCommand } from './command-line.ts';
import { EXIT, UsageError } from './errors.ts';

function run(argv: string[]): Extract<ParsedCommand, { kind: 'run' }> {
  const parsed = parseCommandLine(argv);
  assert.equal(parsed.kind, 'run');
  return parsed;
}

void describe('parseCommandLine', () => {
  const accepted: { argv: string[]; verb: string; positionals: string[]; flags: Record<string, unknown>; global: Record<string, unknown>; pass?: string[] }[] = [
    { argv: ['start', 'web-1'], verb: 'start', positionals: ['web-1'], flags: {}, global: {} },
    { argv: ['-n', 'prod', 'stop', 'web-1', '--wait'], verb: 'stop', positionals: ['web-1'], flags: { namespace: 'prod', wait: true }, global: { namespace: 'prod' } },
    { argv: ['stop', 'web-1', '--namespace=prod'], verb: 'stop', positionals: ['web-1'], flags: { namespace: 'prod' }, global: { namespace: 'prod' } },
    { argv: ['stop', '-nprod', 'web-1'], verb: 'stop', positionals: ['web-1'], flags: { namespace: 'prod' }, global: { namespace: 'prod' } },
    { argv: ['--kubeconfig', '/k', '--context', 'c', 'pause', 'vm'], verb: 'pause', positionals: ['vm'], flags: { kubeconfig: '/k', context: 'c' }, global: { kubeconfig: '/k', context: 'c' } },
    { argv: ['restart', 'vm', '--wait=false', '--timeout', '60'], verb: 'restart', positionals: ['vm'], flags: { wait: false, timeout: 60 }, global: {} },
    { argv: ['migrate', 'vm', '--to-node', 'node-2'], verb: 'migrate', positionals: ['vm'], flags: { 'to-node': 'node-2' }, global: {} },
    { argv: ['vnc', 'vm', '--proxy-only', '--port=5901'], verb: 'vnc', positionals: ['vm'], flags: { 'proxy-only': true, port: 5901 }, global: {} },
    { argv: ['port-forward', 'vm', '8080:80', '22'], verb: 'port-forward', positionals: ['vm', '8080:80', '22'], flags: {}, global: {} },
    { argv: ['guestinfo', 'vm', '-o', 'json'], verb: 'guestinfo', positionals: ['vm'], flags: { output: 'json' }, global: {} },
    { argv: ['--request-timeout', '5', 'version', '--client'], verb: 'version', positionals: [], flags: { 'request-timeout': 5, client: true }, global: { requestTimeoutSeconds: 5 } },
    {
      argv: ['ssh', 'root@vm', '-i', 'key', '--', '-o', 'StrictHostKeyChecking=no', 'uptime'],
      verb: 'ssh', positionals: ['root@vm'], flags: { 'identity-file': 'key' }, global: {}, pass: ['-o', 'StrictHostKeyChecking=no', 'uptime'],
    },
    { argv: ['scp', '-r', 'vm:/var/log', './logs'], verb: 'scp', positionals: ['vm:/var/log', './logs'], flags: { recursive: true }, global: {} },
  ];
  for (const c of accepted) {
    void it(`accepts ${c.argv.join(' ')}`, () => {
      const parsed = run(c.argv);
      assert.equal(parsed.verb.name, c.verb);
      assert.deepEqual(parsed.positionals, c.positionals);
      assert.deepEqual(Object.fromEntries(parsed.flags), c.flags);
      assert.deepEqual(parsed.global, c.global);
      assert.deepEqual(parsed.passThrough, c.pass ?? []);
    });
  }

  const rejected: { argv: string[]; message: RegExp; verb?: string }[] = [
    { argv: ['frobnicate', 'vm'], message: /^unknown verb "frobnicate"$/ },
    { argv: ['image-upload'], message: /"image-upload" needs IMAGE/, verb: 'image-upload' },
    { argv: ['image-upload', 'x', '--file'], message: /flag --file needs a value \(PATH\)/, verb: 'image-upload' },
    { argv: ['start'], message: /"start" needs VM/, verb: 'start' },
    { argv: ['start', 'a', 'b'], message: /"start" takes 1 argument\(s\); unexpected "b"/, verb: 'start' },
    { argv: ['start', 'vm', '--force'], message: /unknown flag --force for "start"/, verb: 'start' },
    { argv: ['pause', 'vm', '-x'], message: /unknown flag -x for "pause"/, verb: 'pause' },
    { argv: ['stop', 'vm', '--timeout'], message: /flag --timeout needs a value \(SECONDS\)/, verb: 'stop' },
    { argv: ['stop', 'vm', '--timeout', 'soon'], message: /flag --timeout needs a whole number, not "soon"/, verb: 'stop' },
    { argv: ['vnc', 'vm', '--port', '70000'], message: /flag --port must be between 0 and 65535, not 70000/, verb: 'vnc' },
    { argv: ['stop', 'vm', '--wait=maybe'], message: /flag --wait is true or false, not "maybe"/, verb: 'stop' },
    { argv: ['pause', 'vm', '--', 'x'], message: /"pause" takes no arguments after --/, verb: 'pause' },
    { argv: ['port-forward', 'vm'], message: /"port-forward" needs \[LOCAL:\]PORT/, verb: 'port-forward' },
    { argv: ['-n', 'prod'], message: /no verb given/ },
    { argv: ['migrate', 'vm', '--to-node='], message: /flag --to-node needs a non-empty value/, verb: 'migrate' },
  ];
  for (const c of rejected) {
    void it(`rejects ${c.argv.join(' ')}`, () => {
      assert.throws(
        () => parseCommandLine(c.argv),
        (err: unknown) => {
          assert.ok(err instanceof UsageError);
          assert.match(err.message, c.message);
          assert.equal(err.exitCode, EXIT.usage);
          assert.equal(err.verb, c.verb);
          return true;
        },
      );
    });
  }

  void it('asks for help: no words, --help, -h, help VERB, VERB --help', () => {
    assert.deepEqual(parseCommandLine([]), { kind: 'help' });
    assert.deepEqual(parseCommandLine(['--help']), { kind: 'help' });
    assert.deepEqual(parseCommandLine(['help']), { kind: 'help' });
    const verbHelp = parseCommandLine(['help', 'console']);
    assert.equal(verbHelp.kind === 'help' ? verbHelp.verb?.name : undefined, 'console');
    const flagHelp = parseCommandLine(['vnc', '-h']);
    assert.equal(flagHelp.kind === 'help' ? flagHelp.verb?.name : undefined, 'vnc');
    const incomplete = parseCommandLine(['start', '--help']);
    assert.equal(incomplete.kind, 'help', '--help wins over a missing argument');
  });
});
