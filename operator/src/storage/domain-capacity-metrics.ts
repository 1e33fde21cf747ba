// What the storage domain gauges show (ADR 0069): per StorageDomain its capacity, used
// and free bytes from the status the operator wrote, and its thresholds from the spec,
// so that alerts compare them (used ≥ warningPercent: low; free < criticalFreeGiB: critical).
import { parseQuantity, type StorageDomain } from '@keyvirt/crds';

export interface DomainCapacity {
  readonly domain: string;
  readonly capacityBytes: number | undefined;
  readonly usedBytes: number | undefined;
  readonly freeBytes: number | undefined;
  readonly warningRatio: number;
  readonly criticalFreeBytes: number;
}

const GiB = 1024 ** 3;

export function domainCapacity(domain: StorageDomain): DomainCapacity {
  const q = (text: string | undefined): number | undefined => (text === undefined ? undefined : parseQuantity(text));
  return {
    domain: domain.metadata.name ?? '',
    capacityBytes: q(domain.status?.capacity),
    usedBytes: q(domain.status?.used),
    freeBytes: q(domain.status?.free),
    warningRatio: domain.spec.thresholds.warningPercent / 100,
    criticalFreeBytes: domain.spec.thresholds.criticalFreeGiB * GiB,
  };
}
