// The v1 routes of the launcher API: info, status, events, lifecycle actions, and an
// unauthenticated health check for the pod's probes.
import type { Info, LifecycleAction, Status } from '../api/status.ts';
import { ActionBodySchemas, LifecycleActionSchema } from '../api/status.ts';
import { ActionConflictError } from '../supervisor/supervisor.ts';
import { HttpError } from './errors.ts';
import { EventStreams } from './event-stream.ts';
import type { EventSource } from './event-stream.ts';
import type { ApiServer } from './server.ts';
import { registerMetricsRoute, type MetricsRouteDeps } from '../metrics/metrics-route.ts';

export interface Lifecycle extends EventSource {
  pause(): Promise<void>;
  resume(): Promise<void>;
  reset(): Promise<void>;
  reboot(): Promise<void>;
  shutdown(gracePeriodMs: number): Promise<void>;
  powerOff(): Promise<void>;
}

export interface V1Deps {
  info: () => Info;
  vm: Lifecycle;
  defaultGracePeriodSeconds: number;
  /** GET /v1/metrics (ADR 0069), when the launcher collects metrics. */
  metrics?: MetricsRouteDeps;
}

async function runAction(vm: Lifecycle, action: LifecycleAction, body: { gracePeriodSeconds?: number }, defaultGrace: number): Promise<void> {
  switch (action) {
    case 'shutdown':
      return vm.shutdown((body.gracePeriodSeconds ?? defaultGrace) * 1000);
    case 'stop':
      return vm.powerOff();
    case 'pause':
      return vm.pause();
    case 'resume':
      return vm.resume();
    case 'reset':
      return vm.reset();
    case 'reboot':
      return vm.reboot();
  }
}

export function registerV1Routes(server: ApiServer, deps: V1Deps): void {
  const streams = new EventStreams(deps.vm);
  server.route('GET', '/healthz', () => Promise.resolve({ status: 200, body: { ok: true } }), { public: true });
  server.route('GET', '/v1/info', () => Promise.resolve({ status: 200, body: deps.info() }));
  server.route('GET', '/v1/status', () => Promise.resolve({ status: 200, body: deps.vm.status satisfies Status }));
  if (deps.metrics !== undefined) registerMetricsRoute(server, deps.metrics);
  server.route('GET', '/v1/events', ({ res }) => {
    streams.serve(res);
    return Promise.resolve(undefined);
  });
  server.route('POST', '/v1/actions/:action', async ({ params, body }) => {
    const parsedAction = LifecycleActionSchema.safeParse(params.action);
    if (!parsedAction.success) {
      throw new HttpError(404, 'NotFound', `unknown action ${params.action ?? ''}; known: ${LifecycleActionSchema.options.join(', ')}`);
    }
    const action = parsedAction.data;
    const request: { gracePeriodSeconds?: number } = await body(ActionBodySchemas[action]);
    try {
      await runAction(deps.vm, action, request, deps.defaultGracePeriodSeconds);
    } catch (err) {
      if (err instanceof ActionConflictError) throw new HttpError(409, 'Conflict', err.message);
      throw err;
    }
    return { status: 202, body: { accepted: true, action, status: deps.vm.status } };
  });
}
