import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkFrontProxy, FrontProxyConfigError, parseFrontProxyConfig, remoteUser, type FrontProxyConfig } from './front-proxy.ts';

const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

const configMap = (data: Record<string, string>): unknown => ({ metadata: { name: 'extension-apiserver-authentication' }, data });
const full = {
  'requestheader-client-ca-file': PEM,
  'requestheader-allowed-names': '["front-proxy-client"]',
  'requestheader-username-headers': '["X-Remote-User"]',
  'requestheader-uid-headers': '["X-Remote-Uid"]',
  'requestheader-group-headers': '["X-Remote-Group"]',
  'requestheader-extra-headers-prefix': '["X-Remote-Extra-"]',
};

void test('parses the ConfigMap the kube-apiserver publishes, header names lowercased', () => {
  assert.deepEqual(parseFrontProxyConfig(configMap(full)), {
    caPem: PEM,
    allowedNames: ['front-proxy-client'],
    usernameHeaders: ['x-remote-user'],
    uidHeaders: ['x-remote-uid'],
    groupHeaders: ['x-remote-group'],
    extraHeaderPrefixes: ['x-remote-extra-'],
  });
});

const badMaps: { name: string; data: Record<string, string>; message: RegExp }[] = [
  { name: 'no requestheader CA (aggregation off)', data: { 'client-ca-file': PEM }, message: /requestheader-client-ca-file/ },
  { name: 'CA not PEM', data: { ...full, 'requestheader-client-ca-file': 'junk' }, message: /no PEM certificate/ },
  { name: 'names not JSON', data: { ...full, 'requestheader-allowed-names': 'front-proxy-client' }, message: /requestheader-allowed-names is not JSON/ },
  { name: 'headers not a list', data: { ...full, 'requestheader-username-headers': '"X-Remote-User"' }, message: /not a JSON list/ },
  { name: 'empty username headers', data: { ...full, 'requestheader-username-headers': '[]' }, message: /empty/ },
];
for (const b of badMaps) {
  void test(`refuses a ConfigMap: ${b.name}`, () => {
    assert.throws(() => parseFrontProxyConfig(configMap(b.data)), (err: unknown) => err instanceof FrontProxyConfigError && b.message.test(err.message));
  });
}

const decisions: { name: string; authorized: boolean; cn: string | undefined; allowed: string[]; ok: boolean; why?: RegExp }[] = [
  { name: 'front proxy', authorized: true, cn: 'front-proxy-client', allowed: ['front-proxy-client'], ok: true },
  { name: 'any CN when no names are listed', authorized: true, cn: 'whoever', allowed: [], ok: true },
  { name: 'no certificate', authorized: false, cn: undefined, allowed: ['front-proxy-client'], ok: false, why: /no client certificate/ },
  { name: 'another CA, right CN', authorized: false, cn: 'front-proxy-client', allowed: ['front-proxy-client'], ok: false, why: /not signed/ },
  { name: 'right CA, another CN', authorized: true, cn: 'kubelet', allowed: ['front-proxy-client'], ok: false, why: /"kubelet" is not an allowed/ },
];
for (const d of decisions) {
  void test(`front-proxy check: ${d.name}`, () => {
    const got = checkFrontProxy({ authorized: d.authorized, commonName: d.cn }, { allowedNames: d.allowed });
    assert.equal(got.ok, d.ok);
    if (!got.ok && d.why !== undefined) assert.match(got.why, d.why);
  });
}

const config: FrontProxyConfig = parseFrontProxyConfig(configMap(full));

void test('reads user, uid, groups and percent-decoded extra keys', () => {
  const user = remoteUser(
    {
      'x-remote-user': ['alice'],
      'x-remote-uid': ['u-1'],
      'x-remote-group': ['dev', 'system:authenticated'],
      'x-remote-extra-scopes': ['a', 'b'],
      'x-remote-extra-authentication.kubernetes.io%2fpod-name': ['p'],
      'x-remote-extra-%zz': ['ignored'],
      'x-other': ['x'],
    },
    config,
  );
  assert.deepEqual(user, {
    username: 'alice',
    uid: 'u-1',
    groups: ['dev', 'system:authenticated'],
    extra: { scopes: ['a', 'b'], 'authentication.kubernetes.io/pod-name': ['p'] },
  });
});

void test('no user header means no user', () => {
  assert.equal(remoteUser({ 'x-remote-group': ['system:masters'] }, config), undefined);
  assert.equal(remoteUser({ 'x-remote-user': [''] }, config), undefined);
});
