// Kubernetes Events (events.k8s.io/v1) about objects the operator manages. Controllers
// call it on transitions only; a failure to record an event is logged, never fatal.
// Recording does not hold the reconcile: the write goes out in the background (as
// client-go's broadcaster does), at most MAX_EVENTS_IN_FLIGHT at a time — past that,
// as in a burst of thousands of VMs, events are dropped (counted in the log) rather
// than queued without bound.
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { KubeClient } from './kube-client.ts';
import { coreTypes, collectionPath } from './resource.ts';

export interface EventTarget {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string | undefined; uid?: string | undefined };
}

export interface RecordedEvent {
  type: 'Normal' | 'Warning';
  /** CamelCase, e.g. Started. */
  reason: string;
  /** What the operator did, e.g. Start, Stop, Schedule. */
  action: string;
  note: string;
}

export interface EventSink {
  record(target: EventTarget, event: RecordedEvent): Promise<void>;
}

/** Event writes in flight; more are dropped (client-go's broadcaster queues 1,000). */
export const MAX_EVENTS_IN_FLIGHT = 1000;

function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export class EventRecorder implements EventSink {
  readonly #client: Pick<KubeClient, 'create'>;
  readonly #controller: string;
  readonly #instance: string;
  readonly #log: Logger;
  readonly #now: () => number;
  #inFlight = 0;
  #dropped = 0;
  readonly #writes = new Set<Promise<void>>();

  constructor(opts: { client: Pick<KubeClient, 'create'>; controller: string; instance: string; log: Logger; now: () => number }) {
    this.#client = opts.client;
    this.#controller = opts.controller;
    this.#instance = opts.instance;
    this.#log = opts.log;
    this.#now = opts.now;
  }

  /** Starts the event's write and returns at once (dropped when MAX_EVENTS_IN_FLIGHT are in flight). */
  record(target: EventTarget, event: RecordedEvent): Promise<void> {
    if (this.#inFlight >= MAX_EVENTS_IN_FLIGHT) {
      this.#dropped += 1;
      if (this.#dropped === 1 || this.#dropped % 1000 === 0) this.#log.warn({ dropped: this.#dropped, reason: event.reason }, 'too many events in flight, event dropped');
      return Promise.resolve();
    }
    this.#inFlight += 1;
    const write = this.#write(target, event).finally(() => {
      this.#inFlight -= 1;
      this.#writes.delete(write);
    });
    this.#writes.add(write);
    return Promise.resolve();
  }

  /** Resolves once every event write started so far has ended. */
  async flush(): Promise<void> {
    await Promise.all([...this.#writes]);
  }

  async #write(target: EventTarget, event: RecordedEvent): Promise<void> {
    const namespace = target.metadata.namespace ?? 'default';
    const body = {
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name: `${target.metadata.name}.${randomBytes(8).toString('hex')}`, namespace },
      eventTime: microTime(this.#now()),
      reportingController: this.#controller,
      reportingInstance: this.#instance,
      action: event.action,
      reason: event.reason,
      note: event.note.slice(0, 1024),
      type: event.type,
      regarding: {
        apiVersion: target.apiVersion,
        kind: target.kind,
        name: target.metadata.name,
        namespace: target.metadata.namespace,
        uid: target.metadata.uid,
      },
    };
    try {
      await this.#client.create(collectionPath(coreTypes.event, namespace), body);
    } catch (err) {
      this.#log.warn({ err, reason: event.reason }, 'could not record event');
    }
  }
}
