import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { envNameOf, FLAGS, readSettings, SettingsError } from './settings.ts';

const main = path.join(path.dirname(fileURLToPath(import.meta.url)), 'main.ts');

function problemsOf(argv: string[], env: NodeJS.ProcessEnv = {}): readonly string[] {
  try {
    readSettings(argv, env);
  } catch (err) {
    assert.ok(err instanceof SettingsError, String(err));
    return err.problems;
  }
  assert.fail(`accepted ${argv.join(' ')}`);
}

describe('operator settings', () => {
  test('defaults with no flag and no variable', () => {
    const s = readSettings([], {});
    assert.equal(s.namespace, 'keyvirt-system');
    assert.equal(s.agentRestartGraceSeconds, 30);
    assert.equal(s.haRestartBudget, 3);
    assert.equal(s.launcherHost, 'pod');
    assert.equal(s.leaderElect, true);
  });

  test('a variable stands in for its flag, and the flag wins over it', () => {
    const env = { [envNameOf(FLAGS.agentRestartGraceSeconds)]: '45', KEYVIRT_OPERATOR_WORKERS: '8', POD_NAMESPACE: 'kv' };
    assert.equal(envNameOf(FLAGS.agentRestartGraceSeconds), 'KEYVIRT_OPERATOR_AGENT_RESTART_GRACE_SECONDS');
    const fromEnv = readSettings([], env);
    assert.deepEqual([fromEnv.agentRestartGraceSeconds, fromEnv.workers, fromEnv.namespace], [45, 8, 'kv']);
    const fromFlag = readSettings(['--agent-restart-grace-seconds', '0', '--namespace', 'other'], env);
    assert.deepEqual([fromFlag.agentRestartGraceSeconds, fromFlag.namespace], [0, 'other']);
  });

  test('the agent restart grace is 0, or from the lease F (5 s) to 300 s', () => {
    for (const ok of ['0', '5', '30', '300']) assert.equal(readSettings(['--agent-restart-grace-seconds', ok], {}).agentRestartGraceSeconds, Number(ok));
    for (const bad of ['1', '4', '301', '-1', '2.5', 'soon']) {
      const problems = problemsOf([`--agent-restart-grace-seconds=${bad}`]);
      assert.equal(problems.length, 1, problems.join('\n'));
      assert.match(problems[0] ?? '', /^--agent-restart-grace-seconds \(KEYVIRT_OPERATOR_AGENT_RESTART_GRACE_SECONDS\): /, bad);
    }
    assert.match(problemsOf(['--agent-restart-grace-seconds', '3'])[0] ?? '', /must be 0 or at least the lease's F \(5 s\)/);
    assert.match(problemsOf([], { KEYVIRT_OPERATOR_AGENT_RESTART_GRACE_SECONDS: '400' })[0] ?? '', /^--agent-restart-grace-seconds .*300/);
  });

  test('every bad value is named at once; an unknown flag is named', () => {
    const problems = problemsOf(['--launcher-host', 'elsewhere', '--workers', '0', '--ha-restart-budget', '101', '--health-address', 'nowhere']);
    assert.deepEqual(
      problems.map((p) => p.split(' ')[0]),
      ['--health-address', '--launcher-host', '--workers', '--ha-restart-budget'],
    );
    assert.match(problems[1] ?? '', /launcher-host must be pod or node-agent/);
    assert.match(problemsOf(['--agent-restart-grace', '30'])[0] ?? '', /'--agent-restart-grace'/);
    assert.match(problemsOf(['stray'])[0] ?? '', /stray/);
  });

  test('the operator refuses to start on a bad flag, naming it, before it reaches for a cluster', () => {
    const r = spawnSync(process.execPath, [main, '--agent-restart-grace-seconds', '2', '--kubeconfig', '/nonexistent'], { encoding: 'utf8', timeout: 30_000, env: { PATH: process.env.PATH } });
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /^keyvirt-operator: invalid settings:\n {2}--agent-restart-grace-seconds \(KEYVIRT_OPERATOR_AGENT_RESTART_GRACE_SECONDS\): must be 0 or at least the lease's F \(5 s\)\n$/);
  });
});
