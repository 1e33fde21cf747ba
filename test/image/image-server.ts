// A file server for the image suites, run inside the cluster as a pod (the
// keyvirt/operator image runs this repository on the pinned Node.js): serves the
// files of one directory with byte ranges, at most `rate` bytes per second so that a
// test can watch an import's progress. Usage: image-server.ts <dir> <port> [rate].
import { createReadStream, statSync } from 'node:fs';
import { createServer } from 'node:http';
import path from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';

const [dir = '/srv', portText = '8080', rateText = '0'] = process.argv.slice(2);
const rate = Number(rateText);

/** Passes bytes on at no more than `bytesPerSecond`. */
class Throttle extends Transform {
  readonly #bytesPerSecond: number;
  readonly #started = Date.now();
  #sent = 0;

  constructor(bytesPerSecond: number) {
    super();
    this.#bytesPerSecond = bytesPerSecond;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.#sent += chunk.length;
    const due = this.#started + (this.#sent * 1000) / this.#bytesPerSecond - Date.now();
    setTimeout(() => done(null, chunk), Math.max(0, due));
  }
}

const server = createServer((req, res) => {
  const name = decodeURIComponent((req.url ?? '/').split('?')[0] ?? '/');
  const file = path.join(dir, path.normalize(name).replace(/^(\.\.[/\\])+/, ''));
  let size: number;
  try {
    const st = statSync(file);
    if (!st.isFile()) throw new Error('not a file');
    size = st.size;
  } catch {
    res.writeHead(404).end('not found\n');
    return;
  }
  const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  const start = range === null ? 0 : Number(range[1]);
  if (start > size) {
    res.writeHead(416, { 'content-range': `bytes */${size}` }).end();
    return;
  }
  res.writeHead(range === null ? 200 : 206, {
    'content-length': String(size - start),
    'accept-ranges': 'bytes',
    ...(range === null ? {} : { 'content-range': `bytes ${start}-${size - 1}/${size}` }),
  });
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  const body = createReadStream(file, { start });
  (rate > 0 ? body.pipe(new Throttle(rate)) : body).pipe(res);
});
server.listen(Number(portText), '0.0.0.0', () => process.stdout.write(`serving ${dir} on ${portText}\n`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
