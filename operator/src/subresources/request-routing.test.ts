import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SubresourceError } from './errors.ts';
import { pathSegments, routeRequest } from './request-routing.ts';

const base = '/apis/subresources.keyvirt.io/v1alpha1/namespaces/ns-1/virtualmachines/vm-1';

const routed: { name: string; method: string; path: string; upgrade?: boolean; want: unknown }[] = [
  { name: 'health', method: 'GET', path: '/healthz', want: { kind: 'health' } },
  { name: 'readyz', method: 'GET', path: '/readyz', want: { kind: 'health' } },
  { name: '/apis', method: 'GET', path: '/apis', want: { kind: 'discovery', document: 'apis' } },
  { name: 'group', method: 'GET', path: '/apis/subresources.keyvirt.io', want: { kind: 'discovery', document: 'group' } },
  { name: 'version', method: 'GET', path: '/apis/subresources.keyvirt.io/v1alpha1/', want: { kind: 'discovery', document: 'version' } },
  { name: 'console upgrade', method: 'GET', path: `${base}/console`, upgrade: true, want: { kind: 'subresource', namespace: 'ns-1', name: 'vm-1', subresource: 'console', verb: 'get', stream: true } },
  { name: 'vnc upgrade', method: 'GET', path: `${base}/vnc?x=1`, upgrade: true, want: { kind: 'subresource', namespace: 'ns-1', name: 'vm-1', subresource: 'vnc', verb: 'get', stream: true } },
  { name: 'pause', method: 'PUT', path: `${base}/pause`, want: { kind: 'subresource', namespace: 'ns-1', name: 'vm-1', subresource: 'pause', verb: 'update', stream: false } },
  { name: 'soft-reboot', method: 'PUT', path: `${base}/soft-reboot`, want: { kind: 'subresource', namespace: 'ns-1', name: 'vm-1', subresource: 'soft-reboot', verb: 'update', stream: false } },
  { name: 'guestinfo', method: 'GET', path: `${base}/guestinfo`, want: { kind: 'subresource', namespace: 'ns-1', name: 'vm-1', subresource: 'guestinfo', verb: 'get', stream: false } },
  { name: 'image upload by PUT', method: 'PUT', path: '/apis/subresources.keyvirt.io/v1alpha1/namespaces/ns-1/virtualmachineimages/img-1/upload', want: { kind: 'image-upload', namespace: 'ns-1', name: 'img-1', resource: 'virtualmachineimages', subresource: 'upload', verb: 'update' } },
  { name: 'image upload by POST', method: 'POST', path: '/apis/subresources.keyvirt.io/v1alpha1/namespaces/ns-1/virtualmachineimages/img-1/upload', want: { kind: 'image-upload', namespace: 'ns-1', name: 'img-1', resource: 'virtualmachineimages', subresource: 'upload', verb: 'create' } },
  { name: 'percent-encoded name', method: 'PUT', path: base.replace('vm-1', 'vm%2D1') + '/migrate', want: { kind: 'subresource', namespace: 'ns-1', name: 'vm-1', subresource: 'migrate', verb: 'update', stream: false } },
];

for (const r of routed) {
  void test(`routes ${r.name}`, () => {
    assert.deepEqual(routeRequest(r.method, pathSegments(r.path), r.upgrade ?? false), r.want);
  });
}

const refused: { name: string; method: string; path: string | undefined; upgrade?: boolean; code: number; message: RegExp }[] = [
  { name: 'another group', method: 'GET', path: '/apis/keyvirt.io/v1alpha1', code: 404, message: /group keyvirt.io/ },
  { name: 'another version', method: 'GET', path: '/apis/subresources.keyvirt.io/v1', code: 404, message: /version/ },
  { name: 'core API', method: 'GET', path: '/api/v1/pods', code: 404, message: /not served/ },
  { name: 'discovery by PUT', method: 'PUT', path: '/apis', code: 405, message: /PUT/ },
  { name: 'unknown subresource', method: 'GET', path: `${base}/reboot-now`, code: 404, message: /no subresource "reboot-now"; known: console/ },
  { name: 'other resource', method: 'GET', path: base.replace('virtualmachines', 'pods') + '/console', code: 404, message: /expected/ },
  { name: 'cluster-scoped path', method: 'GET', path: '/apis/subresources.keyvirt.io/v1alpha1/virtualmachines/vm-1/console', code: 404, message: /expected/ },
  { name: 'too deep', method: 'PUT', path: `${base}/pause/now`, code: 404, message: /expected/ },
  { name: 'bad namespace', method: 'PUT', path: base.replace('ns-1', 'NS_1') + '/pause', code: 400, message: /namespace "NS_1"/ },
  { name: 'bad name', method: 'PUT', path: base.replace('vm-1', '..') + '/pause', code: 400, message: /name "\.\."/ },
  { name: 'image upload by GET', method: 'GET', path: '/apis/subresources.keyvirt.io/v1alpha1/namespaces/ns-1/virtualmachineimages/img-1/upload', code: 405, message: /use PUT or POST/ },
  { name: 'image upload as a websocket', method: 'PUT', path: '/apis/subresources.keyvirt.io/v1alpha1/namespaces/ns-1/virtualmachineimages/img-1/upload', upgrade: true, code: 400, message: /not a websocket/ },
  { name: 'unknown image subresource', method: 'PUT', path: '/apis/subresources.keyvirt.io/v1alpha1/namespaces/ns-1/virtualmachineimages/img-1/download', code: 404, message: /virtualmachineimages has no subresource "download"/ },
  { name: 'bad image name', method: 'PUT', path: '/apis/subresources.keyvirt.io/v1alpha1/namespaces/ns-1/virtualmachineimages/..%2Fx/upload', code: 400, message: /not a valid VirtualMachineImage name/ },
  { name: 'pause by GET', method: 'GET', path: `${base}/pause`, code: 405, message: /use PUT/ },
  { name: 'console by PUT', method: 'PUT', path: `${base}/console`, code: 405, message: /use GET/ },
  { name: 'console without upgrade', method: 'GET', path: `${base}/console`, code: 400, message: /websocket/ },
  { name: 'guestinfo as websocket', method: 'GET', path: `${base}/guestinfo`, upgrade: true, code: 400, message: /not a websocket/ },
  { name: 'authority form', method: 'GET', path: 'a:99999', code: 400, message: /absolute path/ },
  { name: 'no target', method: 'GET', path: undefined, code: 400, message: /absolute path/ },
  { name: 'bad percent-encoding', method: 'GET', path: '/apis/%E0%A4%A', code: 400, message: /percent-encoding/ },
];

for (const r of refused) {
  void test(`refuses ${r.name} with ${r.code}`, () => {
    assert.throws(
      () => routeRequest(r.method, pathSegments(r.path), r.upgrade ?? false),
      (err: unknown) => err instanceof SubresourceError && err.code === r.code && r.message.test(err.message),
    );
  });
}

void test('the historic //a:99999/ target is a path like any other', () => {
  assert.throws(() => routeRequest('GET', pathSegments('//a:99999/'), false), (err: unknown) => err instanceof SubresourceError && err.code === 404);
});
