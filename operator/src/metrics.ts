// The operator's Prometheus metrics, on one registry owned by main.ts. Runtime parts
// report through the small observer interfaces they declare; gauges that describe the
// cluster (VM phases, launcher overhead) read figures their sources keep up to date on
// change (vm/vm-metrics-tally.ts), so a scrape walks no cache.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ControllerObserver, ReconcileOutcome } from './runtime/controller.ts';
import type { InformerObserver } from './runtime/informer.ts';
import type { KubeMethod, KubeRequestObserver, RequestClass } from './runtime/kube-client.ts';

/** What the VM phase and overhead gauges read at scrape time, kept by the source as things change. */
export interface VmPhaseSource {
  /** Count of VMs per printable phase. */
  phaseCounts(): ReadonlyMap<string, number>;
  /** Launcher + QEMU memory overhead requested per running VM, in bytes, keyed by namespace/name. */
  launcherOverheads(): ReadonlyMap<string, number>;
  /** Changes whenever `launcherOverheads` does: a scrape with every revision as before rebuilds nothing. */
  overheadRevision(): number;
}

/** Per StorageDomain: capacity figures and thresholds (operator/src/storage/domain-capacity-metrics.ts). */
export interface StorageCapacitySource {
  capacities(): readonly {
    domain: string;
    capacityBytes: number | undefined;
    usedBytes: number | undefined;
    freeBytes: number | undefined;
    warningRatio: number;
    criticalFreeBytes: number;
  }[];
}

/** What the storage gauges read at scrape time. */
export interface StorageDiskSource {
  /** Per domain: disk images no cached VM wants that are kept, per reason (Detached, OwnerUnparsable, LauncherRunning …). */
  heldDeletions(): Map<string, Map<string, number>>;
}

/** How often the event-loop delay monitor samples, ms. */
const EVENT_LOOP_PRECISION_MS = 100;

export class OperatorMetrics implements ControllerObserver, InformerObserver, KubeRequestObserver {
  readonly registry = new Registry();
  readonly #reconciles: Counter<'controller' | 'result'>;
  readonly #reconcileErrors: Counter<'controller'>;
  readonly #reconcileSeconds: Histogram<'controller'>;
  readonly #queueDepth: Gauge<'controller'>;
  readonly #watchEvents: Counter<'kind' | 'event'>;
  readonly #badObjects: Counter<'kind'>;
  readonly #leader: Gauge;
  readonly #launcherEvents: Counter<'event'>;
  readonly #apiRequests: Counter<'verb' | 'class' | 'code' | 'resource'>;
  readonly #rateLimitWait: Counter;
  readonly #haRestarts: Counter;
  #vmSources: VmPhaseSource[] = [];
  #storageSources: StorageDiskSource[] = [];
  #capacitySources: StorageCapacitySource[] = [];
  /** Cluster-wide gauges (VM phases, domain capacity) are exported by the leader only: replicas must not double-count. */
  #leading = false;

  constructor() {
    const registers = [this.registry];
    // The event-loop delay monitor is a timer firing at its precision: at prom-client's
    // 10 ms it woke an idle operator 100 times a second (~0.7 % of a core here, ADR 0123); at 100 ms
    // the lag histogram still shows every stall that matters and idling costs nothing.
    collectDefaultMetrics({ register: this.registry, prefix: 'keyvirt_operator_', eventLoopMonitoringPrecision: EVENT_LOOP_PRECISION_MS });
    this.#reconciles = new Counter({
      name: 'keyvirt_reconcile_total',
      help: 'Reconciles per controller and result (success, requeue, error, terminal).',
      labelNames: ['controller', 'result'],
      registers,
    });
    this.#reconcileErrors = new Counter({
      name: 'keyvirt_reconcile_errors_total',
      help: 'Reconciles that failed (retried or terminal), per controller.',
      labelNames: ['controller'],
      registers,
    });
    this.#reconcileSeconds = new Histogram({
      name: 'keyvirt_reconcile_duration_seconds',
      help: 'Time spent in one reconcile, per controller.',
      labelNames: ['controller'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.#queueDepth = new Gauge({
      name: 'keyvirt_workqueue_depth',
      help: 'Keys ready to be reconciled, per controller.',
      labelNames: ['controller'],
      registers,
    });
    this.#watchEvents = new Counter({
      name: 'keyvirt_informer_events_total',
      help: 'Informer lifecycle: list, watch connected, watch gone (410, relist), watch error, watch closed.',
      labelNames: ['kind', 'event'],
      registers,
    });
    this.#badObjects = new Counter({
      name: 'keyvirt_informer_invalid_objects_total',
      help: 'Objects from the API server that did not match their schema and were ignored.',
      labelNames: ['kind'],
      registers,
    });
    this.#leader = new Gauge({
      name: 'keyvirt_operator_leader',
      help: '1 while this operator instance holds the leader lease.',
      registers,
    });
    this.#launcherEvents = new Counter({
      name: 'keyvirt_launcher_stream_events_total',
      help: 'Launcher event-stream lifecycle: connected, event, disconnected.',
      labelNames: ['event'],
      registers,
    });
    this.#rateLimitWait = new Counter({
      name: 'keyvirt_api_rate_limit_wait_seconds_total',
      help: 'Time requests spent waiting for the client-side rate limit (--api-qps, --api-burst) before they were sent, summed over requests.',
      registers,
    });
    this.#apiRequests = new Counter({
      name: 'keyvirt_api_requests_total',
      help: 'Requests to the Kubernetes API server, per verb, class (read, write, status, watch), resource and HTTP code (0: no answer).',
      labelNames: ['verb', 'class', 'code', 'resource'],
      registers,
    });
    this.#haRestarts = new Counter({
      name: 'keyvirt_ha_restarts_total',
      help: 'HA restarts completed: a replacement launcher took the storage lease and runs the VM.',
      registers,
    });
    const storageSources = (): StorageDiskSource[] => this.#storageSources;
    new Gauge({
      name: 'keyvirt_storage_disk_deletions_held',
      help: 'Disk images on a StorageDomain that no cached VM wants and that are kept, per domain and reason (OwnerUnparsable and DomainHeld: a VM fails the schema and holds every deletion on the domain).',
      labelNames: ['domain', 'reason'],
      registers,
      collect(): void {
        this.reset();
        for (const s of storageSources()) for (const [domain, reasons] of s.heldDeletions()) for (const [reason, n] of reasons) this.set({ domain, reason }, n);
      },
    });
    const sources = (): VmPhaseSource[] => this.#vmSources;
    const leading = (): boolean => this.#leading;
    new Gauge({
      name: 'keyvirt_vm_phase_count',
      help: 'VirtualMachines per printable phase (exported by the leader only).',
      labelNames: ['phase'],
      registers,
      collect(): void {
        this.reset();
        if (!leading()) return;
        for (const s of sources()) for (const [phase, n] of s.phaseCounts()) this.inc({ phase }, n);
      },
    });
    let overheadsOf: { sources: VmPhaseSource[]; revisions: string } | undefined;
    new Gauge({
      name: 'keyvirt_vm_launcher_memory_overhead_bytes',
      help: 'Memory the launcher pod requests beyond the guest RAM (launcher + QEMU overhead), per VM.',
      labelNames: ['namespace', 'name'],
      registers,
      collect(): void {
        const now = { sources: sources(), revisions: sources().map((s) => s.overheadRevision()).join(',') };
        if (overheadsOf !== undefined && overheadsOf.sources === now.sources && overheadsOf.revisions === now.revisions) return;
        overheadsOf = now;
        this.reset();
        for (const s of sources()) {
          for (const [key, bytes] of s.launcherOverheads()) {
            const [namespace = '', name = ''] = key.split('/');
            this.set({ namespace, name }, bytes);
          }
        }
      },
    });
    const capacities = (): StorageCapacitySource[] => this.#capacitySources;
    const domainGauge = (name: string, help: string, pick: (c: ReturnType<StorageCapacitySource['capacities']>[number]) => number | undefined): void => {
      new Gauge({
        name,
        help: `${help} (exported by the leader only).`,
        labelNames: ['domain'],
        registers,
        collect(): void {
          this.reset();
          if (!leading()) return;
          for (const s of capacities()) {
            for (const c of s.capacities()) {
              const v = pick(c);
              if (v !== undefined) this.set({ domain: c.domain }, v);
            }
          }
        },
      });
    };
    domainGauge('keyvirt_storage_domain_capacity_bytes', 'Total size of each StorageDomain, bytes', (c) => c.capacityBytes);
    domainGauge('keyvirt_storage_domain_used_bytes', 'Space in use on each StorageDomain, bytes', (c) => c.usedBytes);
    domainGauge('keyvirt_storage_domain_free_bytes', 'Space left on each StorageDomain, bytes', (c) => c.freeBytes);
    domainGauge('keyvirt_storage_domain_warning_ratio', 'Used fraction at which each StorageDomain is low on space (spec.thresholds.warningPercent / 100)', (c) => c.warningRatio);
    domainGauge('keyvirt_storage_domain_critical_free_bytes', 'Free space below which each StorageDomain creates no disk (spec.thresholds.criticalFreeGiB), bytes', (c) => c.criticalFreeBytes);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  metrics(): Promise<string> {
    return this.registry.metrics();
  }

  addVmSource(source: VmPhaseSource): void {
    this.#vmSources.push(source);
  }

  addStorageCapacitySource(source: StorageCapacitySource): void {
    this.#capacitySources.push(source);
  }

  addStorageSource(source: StorageDiskSource): void {
    this.#storageSources.push(source);
  }

  /**
   * Forgets every source added so far: the metrics live as long as the process, the
   * sources (a leader term's controllers and caches' views) only as long as their term.
   */
  dropSources(): void {
    this.#vmSources = [];
    this.#storageSources = [];
    this.#capacitySources = [];
  }

  onHaRestart(): void {
    this.#haRestarts.inc();
  }

  onReconcile(controller: string, outcome: ReconcileOutcome, seconds: number): void {
    this.#reconciles.inc({ controller, result: outcome });
    if (outcome === 'error' || outcome === 'terminal') this.#reconcileErrors.inc({ controller });
    this.#reconcileSeconds.observe({ controller }, seconds);
  }

  onQueueDepth(controller: string, depth: number): void {
    this.#queueDepth.set({ controller }, depth);
  }

  onList(kind: string): void {
    this.#watchEvents.inc({ kind, event: 'list' });
  }

  onWatchConnected(kind: string): void {
    this.#watchEvents.inc({ kind, event: 'connected' });
  }

  onWatchError(kind: string, reason: 'gone' | 'error' | 'closed'): void {
    this.#watchEvents.inc({ kind, event: reason });
  }

  onBadObject(kind: string): void {
    this.#badObjects.inc({ kind });
  }

  onLeadershipChange(leading: boolean): void {
    this.#leading = leading;
    this.#leader.set(leading ? 1 : 0);
  }

  onLauncherStream(event: 'connected' | 'event' | 'disconnected'): void {
    this.#launcherEvents.inc({ event });
  }

  onApiRequest(method: KubeMethod, cls: RequestClass, code: number, resource = 'other'): void {
    this.#apiRequests.inc({ verb: method, class: cls, code: String(code), resource });
  }

  onRateLimitWait(seconds: number): void {
    this.#rateLimitWait.inc(seconds);
  }
}
