// What every controller's wiring takes from the operator's main (the manager it adds
// its informers and controller to, the API client, its logger, the clock, the event
// sink), and the informer option an operator's label selector turns into.
import type { Logger } from 'pino';
import type { Clock } from './clock.ts';
import type { EventSink } from './event-recorder.ts';
import type { KubeClient } from './kube-client.ts';
import type { Manager } from './manager.ts';

export interface ControllerWiringBase {
  manager: Manager;
  client: KubeClient;
  log: Logger;
  clock: Clock;
  events: EventSink;
}

/** The informer's list option for a label selector: none when the selector is absent or empty (every object). */
export function selectorOption(labelSelector: string | undefined): { labelSelector?: string } {
  return labelSelector === undefined || labelSelector === '' ? {} : { labelSelector };
}
