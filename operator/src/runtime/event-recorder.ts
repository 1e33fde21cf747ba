// Kubernetes Events (events.k8s.io/v1) about objects the operator manages. Controllers
// call it on transitions only; a failure to record an event is logged, never fatal.
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

function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export class EventRecorder implements EventSink {
  readonly #client: Pick<KubeClient, 'create'>;
  readonly #controller: string;
  readonly #instance: string;
  readonly #log: Logger;
  readonly #now: () => number;

  constructor(opts: { client: Pick<KubeClient, 'create'>; controller: string; instance: string; log: Logger; now: () => number }) {
    this.#client = opts.client;
    this.#controller = opts.controller;
    this.#instance = opts.instance;
    this.#log = opts.log;
    this.#now = opts.now;
  }

  async record(target: EventTarget, event: RecordedEvent): Promise<void> {
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
