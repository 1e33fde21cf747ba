// A launcher pod whose launcher the node agent runs (ADR 0134): the pod's PID 1 is the
// launcher image's pod script (launcher/pod/vm-pod.sh, ADR 0131), which holds QEMU and
// fences it; the agent on the pod's node runs the launcher's work from outside the pod.
// The label tells the agent which pods are its own.

export const LABEL_LAUNCHER_HOST = 'keyvirt.io/launcher-host';
export const LAUNCHER_HOST_NODE_AGENT = 'node-agent';
export type LauncherHost = 'pod' | typeof LAUNCHER_HOST_NODE_AGENT;

/** The pod script's path in the launcher image (launcher/Containerfile copies app/ to /opt/keyvirt). */
export const POD_SCRIPT = '/opt/keyvirt/launcher/pod/vm-pod.sh';
/**
 * How long after the pod's SIGTERM the script kills QEMU itself, beyond the VM's grace
 * period, in which the agent shuts the guest down (the pod's own grace is 30 s longer).
 */
const SCRIPT_GRACE_MARGIN_SECONDS = 10;

/** The container's command and environment in a held pod. */
export function heldPodContainer(o: { stateDir: string; graceSeconds: number }): { command: string[]; env: { name: string; value: string }[] } {
  return {
    command: ['/bin/bash', POD_SCRIPT],
    env: [
      { name: 'KEYVIRT_STATE_DIR', value: o.stateDir },
      { name: 'KEYVIRT_GRACE_SECONDS', value: String(o.graceSeconds + SCRIPT_GRACE_MARGIN_SECONDS) },
    ],
  };
}
