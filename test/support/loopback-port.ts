// A loopback port for a test's own server or process.
import { createServer } from 'node:net';

/** A loopback port nothing listens on at the moment of the call (the kernel's pick, released). */
export async function freeLoopbackPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('the kernel gave no loopback port');
  return address.port;
}
