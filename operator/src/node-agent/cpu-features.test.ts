import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { describeCpu, qemuFeatureName, supportedModels } from './cpu-features.ts';

const fixture = (name: string): Promise<string> =>
  readFile(new URL(`../../../test/fixtures/cpuinfo/${name}`, import.meta.url), 'utf8');

void test('cpuinfo flags become QEMU feature names', () => {
  assert.equal(qemuFeatureName('sse4_2'), 'sse4.2');
  assert.equal(qemuFeatureName('avx512_vnni'), 'avx512-vnni');
  assert.equal(qemuFeatureName('tsc_deadline_timer'), 'tsc-deadline');
  assert.equal(qemuFeatureName('avx512f'), 'avx512f');
  assert.equal(qemuFeatureName('sse4.2'), 'sse4.2');
});

void test('an Intel Xeon guest without vmx: models up to Icelake, no SapphireRapids without AMX', async () => {
  const cpu = describeCpu(await fixture('intel-xeon-kvm-guest.txt'));
  assert.equal(cpu.vendor, 'Intel');
  assert.ok(cpu.features.includes('avx512f'));
  assert.ok(cpu.features.includes('sse4.2'));
  assert.ok(!cpu.features.includes('vmx'));
  assert.ok(cpu.models.includes('Icelake-Server-noTSX'));
  assert.deepEqual(cpu.models.slice(0, 4), ['qemu64', 'kvm64', 'qemu32', 'kvm32']);
  assert.ok(cpu.models.includes('Icelake-Server'), 'hle and rtm are listed, so the TSX model fits');
  assert.ok(cpu.models.includes('Cooperlake'));
  assert.ok(!cpu.models.includes('SapphireRapids'));
  assert.ok(!cpu.models.includes('EPYC'));
  assert.equal(cpu.hostModel, 'Icelake-Server-noTSX');
});

void test('an AMD EPYC host with svm: EPYC line, no Intel-only models', async () => {
  const cpu = describeCpu(await fixture('amd-epyc-milan-host.txt'));
  assert.equal(cpu.vendor, 'AMD');
  assert.ok(cpu.features.includes('svm'));
  assert.deepEqual(
    cpu.models.filter((m) => m.startsWith('EPYC')),
    ['EPYC', 'EPYC-Rome', 'EPYC-Milan'],
  );
  assert.ok(!cpu.models.includes('Skylake-Server-noTSX-IBRS'), 'no AVX-512 on Zen 3');
  assert.equal(cpu.hostModel, 'EPYC-Milan');
});

void test('a model needs every one of its features', () => {
  const westmere = new Set(['pni', 'ssse3', 'cx16', 'sse4.1', 'sse4.2', 'popcnt', 'lahf-lm', 'aes', 'pclmulqdq']);
  assert.deepEqual(supportedModels(westmere), ['Nehalem', 'Westmere']);
  westmere.delete('aes');
  assert.deepEqual(supportedModels(westmere), ['Nehalem']);
});

void test('cpuinfo without flags is rejected with a typed error', () => {
  assert.throws(() => describeCpu('processor : 0\nvendor_id : ARM\n'), { name: 'CpuinfoParseError' });
});
