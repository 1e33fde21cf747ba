import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { AcceleratorUnavailableError, chooseAccelerator, cpuinfoHasVirtualization } from './accelerator.ts';
import type { AcceleratorProbe } from './accelerator.ts';

const intel = 'processor\t: 0\nflags\t\t: fpu vme de pse vmx ept\n';
const amd = 'processor\t: 0\nflags\t\t: fpu svm npt\n';
const none = 'processor\t: 0\nflags\t\t: fpu vme de pse sse2\nbugs\t\t: vmx_something\n';

function probe(cpuinfo: string, kvmOpens: boolean): AcceleratorProbe {
  return {
    readCpuinfo: () => Promise.resolve(cpuinfo),
    openKvm: () => (kvmOpens ? Promise.resolve() : Promise.reject(new Error('ENOENT'))),
  };
}

const cases: { name: string; cpuinfo: string; kvm: boolean; allow: boolean; want: 'kvm' | 'tcg' | 'error' }[] = [
  { name: 'vmx and /dev/kvm', cpuinfo: intel, kvm: true, allow: false, want: 'kvm' },
  { name: 'svm and /dev/kvm', cpuinfo: amd, kvm: true, allow: true, want: 'kvm' },
  { name: 'vmx but no /dev/kvm, emulation allowed', cpuinfo: intel, kvm: false, allow: true, want: 'tcg' },
  { name: 'vmx but no /dev/kvm, emulation refused', cpuinfo: intel, kvm: false, allow: false, want: 'error' },
  { name: '/dev/kvm without vmx/svm (software KVM), allowed', cpuinfo: none, kvm: true, allow: true, want: 'tcg' },
  { name: '/dev/kvm without vmx/svm, refused', cpuinfo: none, kvm: true, allow: false, want: 'error' },
  { name: 'unreadable cpuinfo, allowed', cpuinfo: '', kvm: true, allow: true, want: 'tcg' },
];

for (const c of cases) {
  void test(`accelerator: ${c.name} → ${c.want}`, async () => {
    const p = chooseAccelerator(c.allow, probe(c.cpuinfo, c.kvm));
    if (c.want === 'error') {
      await assert.rejects(p, AcceleratorUnavailableError);
    } else {
      assert.equal((await p).accelerator, c.want);
    }
  });
}

void test('flag matching only looks at whole words on flags lines', () => {
  assert.equal(cpuinfoHasVirtualization(none), false);
  assert.equal(cpuinfoHasVirtualization(intel), true);
});

void test('this machine (software KVM, no vmx/svm) picks TCG with the host probe', async (t) => {
  const cpuinfo = await readFile('/proc/cpuinfo', 'utf8');
  if (/\b(vmx|svm)\b/.test(cpuinfo)) {
    t.skip('this host has hardware virtualization');
    return;
  }
  const choice = await chooseAccelerator(true);
  assert.equal(choice.accelerator, 'tcg');
  await assert.rejects(chooseAccelerator(false), AcceleratorUnavailableError);
});
