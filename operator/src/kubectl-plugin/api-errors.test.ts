import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { KubeApiError, KubeClient, KubeTimeoutError, KubeTransportError } from '../runtime/kube-client.ts';
import { explainApiError, SUBRESOURCE_GROUP, type Attempt } from './api-errors.ts';
import { EXIT, PluginError } from './errors.ts';

const server = 'https://10.0.0.1:6443';
const consoleAttempt: Attempt = { verb: 'get', resource: 'virtualmachines/console', group: SUBRESOURCE_GROUP, namespace: 'prod', name: 'web-1', server };
const vmAttempt: Attempt = { verb: 'get', resource: 'virtualmachines', group: 'keyvirt.io', namespace: 'prod', name: 'web-1', server };

function api(code: number, reason: string, message: string): KubeApiError {
  return new KubeApiError(code, reason, message, { method: 'GET', path: '/apis/x' });
}

void describe('explainApiError', () => {
  const cases: { what: string; err: unknown; attempt: Attempt; exit: number; message: RegExp }[] = [
    {
      what: 'VM not found',
      err: api(404, 'NotFound', 'virtualmachines.keyvirt.io "web-1" not found'),
      attempt: vmAttempt,
      exit: EXIT.notFound,
      message: /^VirtualMachine "web-1" not found in namespace "prod"$/,
    },
    {
      what: 'VM not found, said by the subresource server',
      err: api(404, 'NotFound', 'VirtualMachine prod/web-1 not found'),
      attempt: consoleAttempt,
      exit: EXIT.notFound,
      message: /^VirtualMachine "web-1" not found in namespace "prod"$/,
    },
    {
      what: 'no unfinished migration',
      err: api(404, 'NotFound', 'VirtualMachine prod/web-1 has no unfinished migration'),
      attempt: { ...consoleAttempt, verb: 'update', resource: 'virtualmachines/migrate-cancel' },
      exit: EXIT.notFound,
      message: /^VirtualMachine "web-1" in namespace "prod": VirtualMachine prod\/web-1 has no unfinished migration$/,
    },
    {
      what: 'subresource API not served',
      err: api(404, 'NotFound', 'the server could not find the requested resource'),
      attempt: consoleAttempt,
      exit: EXIT.notFound,
      message: /KeyVirt subresource API \(subresources\.keyvirt\.io\/v1alpha1\) is not served by this cluster.*kubectl get apiservice v1alpha1\.subresources\.keyvirt\.io/,
    },
    {
      what: 'CRDs missing',
      err: api(404, 'NotFound', 'the server could not find the requested resource'),
      attempt: vmAttempt,
      exit: EXIT.notFound,
      message: /the KeyVirt API \(keyvirt\.io\) is not installed/,
    },
    {
      what: 'RBAC denies the console',
      err: api(403, 'Forbidden', 'virtualmachines.subresources.keyvirt.io "web-1" is forbidden: User "bob" cannot get resource "virtualmachines/console"'),
      attempt: consoleAttempt,
      exit: EXIT.forbidden,
      message: /^forbidden: you may not get virtualmachines\/console \(API group subresources\.keyvirt\.io\) in namespace "prod"; ask for an RBAC role that grants it \(virtualmachines\.subresources\.keyvirt\.io "web-1" is forbidden: User "bob"/,
    },
    { what: 'not authenticated', err: api(401, 'Unauthorized', 'Unauthorized'), attempt: vmAttempt, exit: EXIT.forbidden, message: /^not authenticated by the API server at https:\/\/10\.0\.0\.1:6443/ },
    {
      what: 'VM not running',
      err: api(409, 'Conflict', 'VirtualMachine prod/web-1 is not running'),
      attempt: consoleAttempt,
      exit: EXIT.conflict,
      message: /^VirtualMachine "web-1" in namespace "prod": VirtualMachine prod\/web-1 is not running$/,
    },
    { what: 'launcher silent', err: api(503, 'ServiceUnavailable', 'the launcher did not answer'), attempt: consoleAttempt, exit: EXIT.unreachable, message: /virtualmachines\/console of VirtualMachine "web-1" in namespace "prod" is unavailable: the launcher did not answer/ },
    { what: 'other API error', err: api(500, 'InternalError', 'boom'), attempt: vmAttempt, exit: EXIT.failure, message: /get virtualmachines in namespace "prod" failed: 500 InternalError: boom/ },
    {
      what: 'unreachable',
      err: new KubeTransportError('GET /x failed', { cause: new Error('connect ECONNREFUSED 10.0.0.1:6443') }),
      attempt: vmAttempt,
      exit: EXIT.unreachable,
      message: /^cannot reach the API server at https:\/\/10\.0\.0\.1:6443: connect ECONNREFUSED/,
    },
    { what: 'timeout', err: new KubeTimeoutError('GET /x: no answer'), attempt: vmAttempt, exit: EXIT.unreachable, message: /did not answer in time/ },
    {
      what: 'pod port-forward refused',
      err: api(404, 'NotFound', 'pods "launcher-web-1" not found'),
      attempt: { verb: 'create', resource: 'pods/portforward', group: '', namespace: 'prod', name: 'launcher-web-1', server },
      exit: EXIT.notFound,
      message: /^Pod "launcher-web-1" not found in namespace "prod"$/,
    },
  ];
  for (const c of cases) {
    void it(c.what, () => {
      const out = explainApiError(c.err, c.attempt);
      assert.ok(out instanceof PluginError, String(out));
      assert.equal(out.exitCode, c.exit);
      assert.match(out.message, c.message);
    });
  }

  void it('keeps plugin errors and other errors as they are', () => {
    const own = new PluginError('x', 1);
    assert.equal(explainApiError(own, vmAttempt), own);
    const other = new TypeError('y');
    assert.equal(explainApiError(other, vmAttempt), other);
  });

  void it("reads the aggregator's plain-text 503 as an unavailable subresource API", async () => {
    const server = http.createServer((_req, res) => {
      res.writeHead(503, { 'content-type': 'text/plain; charset=utf-8' });
      res.end('service unavailable\n');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const kc = new KubeConfig();
      kc.loadFromOptions({
        clusters: [{ name: 'c', server: `http://127.0.0.1:${String((server.address() as AddressInfo).port)}`, skipTLSVerify: true }],
        users: [{ name: 'u', token: 't' }],
        contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
        currentContext: 'x',
      });
      const err = await new KubeClient(kc, 'test').get('/apis/subresources.keyvirt.io/v1alpha1/namespaces/prod/virtualmachines/web-1/guestinfo').catch((e: unknown) => e);
      assert.ok(err instanceof KubeApiError, String(err));
      assert.equal(err.statusCode, 503);
      const out = explainApiError(err, { ...consoleAttempt, resource: 'virtualmachines/guestinfo' });
      assert.ok(out instanceof PluginError);
      assert.equal(out.exitCode, EXIT.unreachable);
      assert.match(out.message, /^the KeyVirt subresource API is unavailable: the API server cannot reach the operator behind APIService v1alpha1\.subresources\.keyvirt\.io/);
    } finally {
      server.close();
    }
  });
});
