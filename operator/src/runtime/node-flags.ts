// The Node/V8 flags the operator runs with: the chart passes them as NODE_OPTIONS
// (`operator.nodeOptions`, whose default must equal these — node-flags.test.ts) and the
// operator-scale benchmark starts the operator with them (docs/adr/0110).
//   --max-semi-space-size=2   the young generation's semi-spaces at 2 MiB instead of
//                             V8's 16: a long-running controller allocates in small
//                             bursts (watch events, reconciles); the default reserve is
//                             ~30 MiB of resident memory held for them.
//   --max-old-space-size=768  the old generation's ceiling at 75 % of the chart's memory
//                             limit (1Gi; the rest is code, young generation, buffers):
//                             V8 collects harder before the limit instead of the kernel
//                             killing the pod past it.

export const OPERATOR_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2', '--max-old-space-size=768'];
