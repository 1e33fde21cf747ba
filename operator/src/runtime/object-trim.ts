// What an informer drops from every object before its schema parses it and its cache
// holds it: the fields no controller reads and that grow with every writer —
// `metadata.managedFields` (one entry per field manager, often larger than the spec)
// and kubectl's last-applied-configuration annotation (a second copy of the object as
// applied). Kinds whose schema keeps unknown fields (the CRDs' loose ObjectMeta) would
// otherwise cache them; the core kinds' schemas strip them anyway.

/** The annotation `kubectl apply` writes: a copy of the applied manifest. */
export const LAST_APPLIED_ANNOTATION = 'kubectl.kubernetes.io/last-applied-configuration';

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Removes `metadata.managedFields` and the last-applied annotation, in place (the value
 * is a freshly parsed API answer nobody else holds), and returns it.
 */
export function stripUnreadMetadata(raw: unknown): unknown {
  if (!isRecord(raw)) return raw;
  const metadata = raw.metadata;
  if (!isRecord(metadata)) return raw;
  delete metadata.managedFields;
  const annotations = metadata.annotations;
  if (isRecord(annotations) && LAST_APPLIED_ANNOTATION in annotations) {
    delete annotations['kubectl.kubernetes.io/last-applied-configuration'];
  }
  return raw;
}
