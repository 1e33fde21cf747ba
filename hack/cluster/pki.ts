// Certificates and keys of the local cluster, made with openssl: one CA signs the
// API server's serving certificate and every client certificate (the CA file the
// API server trusts for client authentication is the same CA). Existing files are
// kept, so repeated runs are idempotent and kubeconfigs stay valid.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { apiServerUrl, firstServiceIp, network } from './layout.ts';

export interface ClientIdentity {
  readonly file: string;
  readonly user: string;
  readonly groups: readonly string[];
}

/** Client identities the cluster issues certificates for. */
export const clientIdentities: readonly ClientIdentity[] = [
  { file: 'admin', user: 'keyvirt-admin', groups: ['system:masters'] },
  { file: 'viewer', user: 'keyvirt-viewer', groups: [] },
  { file: 'controller-manager', user: 'system:kube-controller-manager', groups: [] },
  { file: 'scheduler', user: 'system:kube-scheduler', groups: [] },
  // The API server's identity towards kubelets (logs, exec, port-forward on real nodes).
  { file: 'apiserver-kubelet-client', user: 'kube-apiserver-kubelet-client', groups: [] },
  // kube-proxy in the host's namespace (ADR 0099): the default ClusterRoleBinding
  // system:node-proxier grants this user what kube-proxy needs.
  { file: 'kube-proxy', user: 'system:kube-proxy', groups: [] },
];

function openssl(args: readonly string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

function ecKey(dir: string, name: string): void {
  if (fs.existsSync(path.join(dir, `${name}.key`))) return;
  openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${name}.key`], dir);
}

function signedCert(dir: string, name: string, subject: string, extensions: string): void {
  if (fs.existsSync(path.join(dir, `${name}.crt`))) return;
  ecKey(dir, name);
  fs.writeFileSync(path.join(dir, `${name}.ext`), extensions);
  openssl(['req', '-new', '-key', `${name}.key`, '-subj', subject, '-out', `${name}.csr`], dir);
  openssl([
    'x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial',
    '-days', '3650', '-sha256', '-extfile', `${name}.ext`, '-out', `${name}.crt`,
  ], dir);
  fs.rmSync(path.join(dir, `${name}.csr`));
  fs.rmSync(path.join(dir, `${name}.ext`));
}

function subjectOf(identity: ClientIdentity): string {
  return `/CN=${identity.user}${identity.groups.map((g) => `/O=${g}`).join('')}`;
}

/** Creates whatever part of the PKI is missing. */
export function ensurePki(pkiDir: string): void {
  fs.mkdirSync(pkiDir, { recursive: true, mode: 0o700 });
  if (!fs.existsSync(path.join(pkiDir, 'ca.crt'))) {
    ecKey(pkiDir, 'ca');
    openssl(['req', '-x509', '-new', '-key', 'ca.key', '-subj', '/CN=keyvirt-local-ca', '-days', '3650', '-sha256', '-out', 'ca.crt'], pkiDir);
  }
  const sans = [
    `IP:${network.gateway}`, 'IP:127.0.0.1', `IP:${firstServiceIp}`, 'DNS:localhost', 'DNS:kubernetes',
    'DNS:kubernetes.default', 'DNS:kubernetes.default.svc', 'DNS:kubernetes.default.svc.cluster.local',
  ];
  signedCert(pkiDir, 'apiserver', '/CN=kube-apiserver',
    `basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=${sans.join(',')}\n`);
  for (const identity of clientIdentities) {
    signedCert(pkiDir, identity.file, subjectOf(identity),
      'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n');
  }
  if (!fs.existsSync(path.join(pkiDir, 'sa.key'))) {
    openssl(['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', 'sa.key'], pkiDir);
    openssl(['pkey', '-in', 'sa.key', '-pubout', '-out', 'sa.pub'], pkiDir);
  }
}

function b64(file: string): string {
  return fs.readFileSync(file).toString('base64');
}

/** A kubeconfig with the client certificate embedded, so it can be copied anywhere. */
export function writeKubeconfig(pkiDir: string, identityFile: string, target: string, server: string = apiServerUrl): void {
  const identity = clientIdentities.find((i) => i.file === identityFile);
  if (identity === undefined) throw new RangeError(`unknown identity ${identityFile}`);
  const config = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'keyvirt', cluster: { server, 'certificate-authority-data': b64(path.join(pkiDir, 'ca.crt')) } }],
    users: [{
      name: identity.user,
      user: {
        'client-certificate-data': b64(path.join(pkiDir, `${identity.file}.crt`)),
        'client-key-data': b64(path.join(pkiDir, `${identity.file}.key`)),
      },
    }],
    contexts: [{ name: `${identity.user}@keyvirt`, context: { cluster: 'keyvirt', user: identity.user } }],
    'current-context': `${identity.user}@keyvirt`,
  };
  const tmp = `${target}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, stringify(config), { mode: 0o600 });
  fs.renameSync(tmp, target);
}
