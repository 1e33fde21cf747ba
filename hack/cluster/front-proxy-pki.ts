// The front-proxy PKI of the local cluster (API aggregation): a CA of its own, apart
// from the cluster CA as kubeadm keeps it, and the client certificate the kube-apiserver
// presents to extension API servers (CN front-proxy-client). Made with openssl once;
// existing files are kept.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export const FRONT_PROXY_CLIENT_NAME = 'front-proxy-client';

export interface FrontProxyFiles {
  readonly caCert: string;
  readonly clientCert: string;
  readonly clientKey: string;
}

function openssl(args: readonly string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

export function frontProxyFiles(pkiDir: string): FrontProxyFiles {
  return {
    caCert: path.join(pkiDir, 'front-proxy-ca.crt'),
    clientCert: path.join(pkiDir, `${FRONT_PROXY_CLIENT_NAME}.crt`),
    clientKey: path.join(pkiDir, `${FRONT_PROXY_CLIENT_NAME}.key`),
  };
}

/** Creates whatever part of the front-proxy PKI is missing. */
export function ensureFrontProxyPki(pkiDir: string): FrontProxyFiles {
  const files = frontProxyFiles(pkiDir);
  fs.mkdirSync(pkiDir, { recursive: true, mode: 0o700 });
  if (!fs.existsSync(files.caCert)) {
    openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', 'front-proxy-ca.key'], pkiDir);
    openssl(['req', '-x509', '-new', '-key', 'front-proxy-ca.key', '-subj', '/CN=keyvirt-front-proxy-ca', '-days', '3650', '-sha256', '-out', 'front-proxy-ca.crt'], pkiDir);
    fs.rmSync(files.clientCert, { force: true });
  }
  if (!fs.existsSync(files.clientCert)) {
    const name = FRONT_PROXY_CLIENT_NAME;
    openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${name}.key`], pkiDir);
    fs.writeFileSync(path.join(pkiDir, `${name}.ext`), 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n');
    openssl(['req', '-new', '-key', `${name}.key`, '-subj', `/CN=${name}`, '-out', `${name}.csr`], pkiDir);
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'front-proxy-ca.crt', '-CAkey', 'front-proxy-ca.key', '-CAcreateserial', '-days', '3650', '-sha256', '-extfile', `${name}.ext`, '-out', `${name}.crt`], pkiDir);
    fs.rmSync(path.join(pkiDir, `${name}.csr`));
    fs.rmSync(path.join(pkiDir, `${name}.ext`));
  }
  return files;
}

/** The kube-apiserver flags of API aggregation (no kube-proxy here: the aggregator dials endpoints itself). */
export function aggregationFlags(files: FrontProxyFiles): string[] {
  return [
    `--requestheader-client-ca-file=${files.caCert}`,
    `--requestheader-allowed-names=${FRONT_PROXY_CLIENT_NAME}`,
    '--requestheader-username-headers=X-Remote-User',
    '--requestheader-uid-headers=X-Remote-Uid',
    '--requestheader-group-headers=X-Remote-Group',
    '--requestheader-extra-headers-prefix=X-Remote-Extra-',
    `--proxy-client-cert-file=${files.clientCert}`,
    `--proxy-client-key-file=${files.clientKey}`,
    '--enable-aggregator-routing=true',
  ];
}
