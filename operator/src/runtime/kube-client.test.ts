import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createServer } from 'node:http';
import { Agent } from 'undici';
import { KubeClient, resourceOf } from './kube-client.ts';

describe('resourceOf', () => {
  const cases: [string, string][] = [
    ['/api/v1/namespaces/ns/pods', 'pods'],
    ['/api/v1/namespaces/ns/pods/name/status', 'pods'],
    ['/api/v1/nodes/kwok-0', 'nodes'],
    ['/api/v1/namespaces', 'namespaces'],
    ['/api/v1/namespaces/ns', 'namespaces'],
    ['/apis/keyvirt.io/v1alpha1/namespaces/ns/virtualmachines/vm/status', 'virtualmachines'],
    ['/apis/coordination.k8s.io/v1/namespaces/ns/leases/l', 'leases'],
    ['/apis/keyvirt.io/v1alpha1/storagedomains?limit=500', 'storagedomains'],
    ['/apis/authorization.k8s.io/v1/subjectaccessreviews', 'subjectaccessreviews'],
    ['/version', 'other'],
  ];
  for (const [path, want] of cases) {
    it(`${path} → ${want}`, () => assert.equal(resourceOf(path), want));
  }
});

describe('KubeClient rate limit', () => {
  it('reports how long each request waited for a token; Lease requests never wait', async () => {
    const server = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    const port = typeof address === 'object' && address !== null ? address.port : 0;
    const dispatcher = new Agent();
    try {
      const client = new KubeClient({ server: `http://127.0.0.1:${port}`, headers: () => Promise.resolve({}), dispatcher }, 'test', { rateLimit: { qps: 20, burst: 1 } });
      const waits: number[] = [];
      client.observe({ onApiRequest: () => undefined, onRateLimitWait: (s) => waits.push(s) });
      await Promise.all([0, 1, 2].map((i) => client.get(`/api/v1/namespaces/ns/pods/p-${i}`)));
      await client.get('/apis/coordination.k8s.io/v1/namespaces/ns/leases/l');
      assert.equal(waits.length, 3);
      const sorted = [...waits].sort((a, b) => a - b);
      // One token at once, then one every 50 ms: the third request waited about 100 ms.
      assert.ok((sorted[0] ?? 1) < 0.04, `first wait ${sorted[0]}`);
      assert.ok((sorted[2] ?? 0) >= 0.09, `last wait ${sorted[2]}`);
    } finally {
      await dispatcher.close();
      server.close();
    }
  });
});
