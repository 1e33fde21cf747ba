import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { overviewHelp, verbHelp } from './help.ts';
import { VERBS } from './verbs.ts';

void describe('help', () => {
  void it('the overview lists every verb (image-upload among them) and the exit codes', () => {
    const text = overviewHelp();
    for (const v of VERBS) assert.match(text, new RegExp(`^  ${v.name} +${v.summary.replace(/[()]/g, '\\$&')}$`, 'm'));
    assert.match(text, /^  image-upload +Upload a disk image file into a VirtualMachineImage$/m);
    assert.doesNotMatch(text, /Not available yet/);
    assert.match(text, /3 not found/);
    assert.match(text, /4 not allowed \(authentication or RBAC\)/);
    assert.match(text, /-n, --namespace NS/);
  });

  for (const verb of VERBS) {
    void it(`${verb.name}: usage, flags and at least one example that runs that verb`, () => {
      const text = verbHelp(verb);
      assert.match(text, new RegExp(`^Usage: kubectl keyvirt ${verb.name}`, 'm'));
      for (const f of verb.flags) assert.match(text, new RegExp(`--${f.name}`));
      assert.ok(verb.examples.length > 0);
      for (const e of verb.examples) {
        assert.ok(e.command.includes(`kubectl keyvirt ${verb.name}`), e.command);
        assert.ok(text.includes(e.command));
      }
    });
  }

  void it('ssh and scp say what goes after --', () => {
    const ssh = VERBS.find((v) => v.name === 'ssh');
    assert.ok(ssh);
    assert.match(verbHelp(ssh), /\[-- ssh options and arguments\]/);
  });
});
