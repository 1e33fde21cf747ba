// What a node agent imports to run the VMs of held launcher pods (ADR 0134).
export { runHeldPod, type HeldPod, type HeldRun } from './pod/held-pod.ts';
export { EXIT_CODES } from './exit-codes.ts';
export { installSafetyNet, type SafetyNet, type UncaughtErrorSource } from './safety-net.ts';
