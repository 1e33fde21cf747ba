import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { HealthServer, type HealthServerOptions } from './health-server.ts';

function options(over: Partial<HealthServerOptions>): HealthServerOptions {
  return {
    host: '127.0.0.1',
    port: 0,
    log: pino({ level: 'silent' }),
    liveness: [{ name: 'ping', check: () => undefined }],
    readiness: [{ name: 'synced', check: () => 'not yet' }],
    metrics: { contentType: 'text/plain; version=0.0.4', metrics: () => Promise.resolve('keyvirt_up 1\n') },
    ...over,
  };
}

async function get(port: number | undefined, path: string, host = '127.0.0.1'): Promise<number> {
  return (await fetch(`http://${host}:${String(port)}${path}`)).status;
}

void describe('HealthServer', () => {
  void it('serves /metrics only on the metrics address when it has one of its own', async (t) => {
    const server = new HealthServer(options({ metricsListen: { host: '127.0.0.2', port: 0 } }));
    const health = await server.listen();
    t.after(() => server.close());
    assert.equal(await get(health, '/healthz'), 200);
    assert.equal(await get(health, '/readyz'), 503);
    assert.equal(await get(health, '/metrics'), 404, 'the probes address does not serve metrics');
    assert.equal(await get(server.metricsPort, '/metrics', '127.0.0.2'), 200);
    assert.equal(await get(server.metricsPort, '/healthz', '127.0.0.2'), 404);
  });

  void it('serves everything on one listener when both addresses are the same', async (t) => {
    const server = new HealthServer(options({}));
    const port = await server.listen();
    t.after(() => server.close());
    assert.equal(server.metricsPort, port);
    assert.equal(await get(port, '/metrics'), 200);
    assert.equal(await get(port, '/healthz'), 200);
  });
});
