// KeyVirt's CRDs on the real API server: Established, explainable, and the
// invalid-object corpus rejected with a message that names the offending field.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { KubectlError } from '../../hack/cluster/kubectl.ts';
import { crdManifests } from '../../hack/cluster/cluster.ts';
import { ensureCluster } from '../support/cluster.ts';
import type { TestCluster } from '../support/cluster.ts';

const invalidDir = path.join(import.meta.dirname, '../fixtures/invalid');

interface InvalidFixture {
  readonly file: string;
  readonly expectPath: string;
  readonly expectMessage: string;
}

function invalidFixtures(): InvalidFixture[] {
  let files: string[];
  try {
    files = fs.readdirSync(invalidDir).filter((f) => f.endsWith('.yaml')).sort();
  } catch {
    return [];
  }
  return files.map((f) => {
    const text = fs.readFileSync(path.join(invalidDir, f), 'utf8');
    return {
      file: path.join(invalidDir, f),
      expectPath: /^# expect-path:\s*(.+)$/m.exec(text)?.[1]?.trim() ?? '',
      expectMessage: /^# expect-message:\s*(.+)$/m.exec(text)?.[1]?.trim() ?? '',
    };
  });
}

/** The expected path and each of its parents, most specific first (e.g. a.b[1].c, a.b[1], a.b). */
function pathAndParents(fieldPath: string): string[] {
  const out: string[] = [];
  let current = fieldPath;
  while (current !== '') {
    out.push(current);
    const cut = Math.max(current.lastIndexOf('.'), current.lastIndexOf('['));
    if (cut <= 0) break;
    current = current.slice(0, cut);
  }
  return out;
}

describe('KeyVirt CRDs on the API server', { timeout: 40 * 60_000 }, () => {
  let cluster: TestCluster;
  before(async () => {
    cluster = await ensureCluster();
  });
  after(() => cluster.release());

  it('are all Established', (t) => {
    const manifests = crdManifests(cluster.layout);
    if (manifests.length === 0) {
      t.skip('no CRD manifests under crds/manifests');
      return;
    }
    for (const file of manifests) {
      const names = cluster.kubectl(['get', '-f', file, '-o', 'name']).trim().split('\n');
      for (const name of names) {
        const established = cluster.kubectl(['get', name, '-o', 'jsonpath={.status.conditions[?(@.type=="Established")].status}']);
        assert.equal(established, 'True', `${name} is Established`);
      }
    }
  });

  it('explain the VirtualMachine spec', (t) => {
    if (crdManifests(cluster.layout).length === 0) {
      t.skip('no CRD manifests under crds/manifests');
      return;
    }
    const out = cluster.kubectl(['explain', 'vm.spec']);
    assert.match(out, /KIND:\s+VirtualMachine/);
    assert.match(out, /GROUP:\s+keyvirt\.io/);
    assert.match(out, /FIELD:\s+spec/);
    assert.match(out, /template/);
  });

  it('reject every object of the invalid corpus, naming the field', (t) => {
    const fixtures = invalidFixtures();
    if (fixtures.length === 0 || crdManifests(cluster.layout).length === 0) {
      t.skip('no invalid corpus or no CRDs yet');
      return;
    }
    const failures: string[] = [];
    for (const fixture of fixtures) {
      assert.notEqual(fixture.expectPath, '', `${fixture.file} has an expect-path annotation`);
      let stderr: string | undefined;
      try {
        cluster.kubectl(['create', '--dry-run=server', '-n', 'default', '-f', fixture.file, '-o', 'name']);
      } catch (err) {
        if (!(err instanceof KubectlError)) throw err;
        stderr = err.stderr;
      }
      const name = path.basename(fixture.file);
      if (stderr === undefined) {
        failures.push(`${name}: accepted by the API server`);
        continue;
      }
      if (!/is invalid/.test(stderr)) {
        failures.push(`${name}: rejected, but not as invalid: ${stderr}`);
        continue;
      }
      const named = pathAndParents(fixture.expectPath).some((p) => stderr.includes(`${p}:`) || stderr.includes(`${p} `));
      if (!named) failures.push(`${name}: the rejection does not name ${fixture.expectPath} (or a parent): ${stderr}`);
    }
    assert.deepEqual(failures, [], `${failures.length} of ${fixtures.length} invalid objects were not rejected as expected`);
  });
});
