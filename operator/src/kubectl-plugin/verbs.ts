// Every verb of `kubectl keyvirt`: its arguments, flags, help text and examples. The
// parser (command-line.ts) and the help (help.ts) read this table only.

export type FlagKind = 'boolean' | 'string' | 'integer';

export interface FlagSpec {
  readonly name: string;
  readonly short?: string;
  readonly kind: FlagKind;
  /** Shown in help: `--port PORT`. */
  readonly valueName?: string;
  readonly description: string;
  readonly min?: number;
  readonly max?: number;
}

export interface ArgSpec {
  readonly name: string;
  readonly description: string;
  readonly optional?: boolean;
  /** Takes every remaining positional argument (at least one unless optional). */
  readonly variadic?: boolean;
}

export interface Example {
  readonly command: string;
  readonly description: string;
}

export interface VerbSpec {
  readonly name: string;
  readonly summary: string;
  /** A paragraph shown under the usage line. */
  readonly details: string;
  readonly args: readonly ArgSpec[];
  readonly flags: readonly FlagSpec[];
  readonly examples: readonly Example[];
  /** Arguments after `--` go to the program the verb runs (ssh, scp). */
  readonly passThrough?: string;
}

/** Flags every verb accepts, as kubectl spells them. */
export const GLOBAL_FLAGS: readonly FlagSpec[] = [
  { name: 'kubeconfig', kind: 'string', valueName: 'FILE', description: 'Kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)' },
  { name: 'context', kind: 'string', valueName: 'NAME', description: 'Kubeconfig context to use (default: the current context)' },
  { name: 'namespace', short: 'n', kind: 'string', valueName: 'NS', description: "The VM's namespace (default: the context's namespace, then \"default\")" },
  { name: 'request-timeout', kind: 'integer', valueName: 'SECONDS', description: 'Deadline of each API request (default 30)', min: 1, max: 3600 },
  { name: 'help', short: 'h', kind: 'boolean', description: 'Show help' },
];

const VM_ARG: ArgSpec = { name: 'VM', description: 'The VirtualMachine' };
const WAIT: FlagSpec = { name: 'wait', kind: 'boolean', description: 'Wait until the VM reaches the resulting phase' };
const TIMEOUT: FlagSpec = { name: 'timeout', kind: 'integer', valueName: 'SECONDS', description: 'How long --wait waits (default 300)', min: 1, max: 86_400 };
const GUEST_PORT: FlagSpec = { name: 'port', short: 'p', kind: 'integer', valueName: 'PORT', description: 'The guest port ssh listens on (default 22)', min: 1, max: 65_535 };
const USER: FlagSpec = { name: 'username', short: 'l', kind: 'string', valueName: 'USER', description: 'The guest user (or write USER@VM)' };

export const VERBS: readonly VerbSpec[] = [
  {
    name: 'start',
    summary: 'Start a stopped VM',
    details: 'Asks the operator to start the VM (the keyvirt.io/request annotation): a Halted VM becomes Always, a Manual or Once VM is started.',
    args: [VM_ARG],
    flags: [WAIT, TIMEOUT],
    examples: [
      { command: 'kubectl keyvirt start web-1', description: 'Start web-1 in the current namespace' },
      { command: 'kubectl keyvirt start web-1 -n prod --wait', description: 'Start it and wait until it is Running' },
    ],
  },
  {
    name: 'stop',
    summary: 'Stop a VM (ACPI shutdown, then power off after its grace period)',
    details: 'Asks the operator to stop the VM: Always and RerunOnFailure become Halted, a Manual or Once VM is stopped. The guest gets an ACPI shutdown and terminationGracePeriodSeconds to finish.',
    args: [VM_ARG],
    flags: [WAIT, TIMEOUT],
    examples: [
      { command: 'kubectl keyvirt stop web-1', description: 'Stop web-1' },
      { command: 'kubectl keyvirt stop web-1 --wait --timeout 120', description: 'Stop it and wait up to 2 minutes for Stopped' },
    ],
  },
  {
    name: 'restart',
    summary: 'Restart a VM in a new launcher pod',
    details: 'Asks the operator to stop the VM gracefully and start it again in a new launcher pod (a new boot). A Halted VM cannot be restarted: start it.',
    args: [VM_ARG],
    flags: [WAIT, TIMEOUT],
    examples: [{ command: 'kubectl keyvirt restart web-1 --wait', description: 'Restart web-1 and wait until the new run is Running' }],
  },
  {
    name: 'pause',
    summary: 'Pause a running VM (its vCPUs stop; memory stays)',
    details: 'Pauses the guest through the virtualmachines/pause subresource. The VM becomes Paused until unpaused.',
    args: [VM_ARG],
    flags: [],
    examples: [{ command: 'kubectl keyvirt pause web-1', description: 'Pause web-1' }],
  },
  {
    name: 'unpause',
    summary: 'Resume a paused VM',
    details: 'Resumes the guest through the virtualmachines/unpause subresource.',
    args: [VM_ARG],
    flags: [],
    examples: [{ command: 'kubectl keyvirt unpause web-1', description: 'Resume web-1' }],
  },
  {
    name: 'soft-reboot',
    summary: 'Reboot the guest (through its agent, a hardware reset without one)',
    details: 'Reboots the guest operating system in the same launcher pod, through the virtualmachines/soft-reboot subresource.',
    args: [VM_ARG],
    flags: [],
    examples: [{ command: 'kubectl keyvirt soft-reboot web-1', description: 'Reboot the guest of web-1' }],
  },
  {
    name: 'migrate',
    summary: 'Live-migrate a VM to another node',
    details: 'Creates a VirtualMachineMigration for the VM; the operator picks the target node (or the one named by --to-node). Progress: kubectl get vmm.',
    args: [VM_ARG],
    flags: [
      { name: 'to-node', kind: 'string', valueName: 'NODE', description: 'Migrate to this node (its kubernetes.io/hostname label)' },
      { name: 'wait', kind: 'boolean', description: 'Wait until the migration ends and report how it ended' },
      TIMEOUT,
    ],
    examples: [
      { command: 'kubectl keyvirt migrate web-1', description: 'Move web-1 to a node the scheduler picks' },
      { command: 'kubectl keyvirt migrate web-1 --to-node node-2 --wait', description: 'Move it to node-2 and wait for the result' },
    ],
  },
  {
    name: 'migrate-cancel',
    summary: "Cancel a VM's running migration",
    details: "Deletes the VM's unfinished VirtualMachineMigration; the VM keeps running where it was.",
    args: [VM_ARG],
    flags: [],
    examples: [{ command: 'kubectl keyvirt migrate-cancel web-1', description: 'Cancel the migration of web-1' }],
  },
  {
    name: 'console',
    summary: "Attach to the VM's serial console",
    details: 'Connects this terminal to the guest serial console through the virtualmachines/console subresource (one session per VM at a time; an idle console stays open). Press Ctrl+] to leave. Without a terminal, standard input and output are piped as they are; the end of the input does not close the console: Ctrl+] in the input, SIGINT or SIGTERM do.',
    args: [VM_ARG],
    flags: [],
    examples: [
      { command: 'kubectl keyvirt console web-1', description: 'Open the serial console of web-1 (Ctrl+] to leave)' },
      { command: "(printf 'uname -a\\n'; sleep 2; printf '\\035') | kubectl keyvirt console web-1", description: 'Type a line, print what comes back for 2 s, then leave (\\035 is Ctrl+])' },
    ],
  },
  {
    name: 'vnc',
    summary: "Open the VM's screen in a VNC viewer, or serve it on a local port",
    details: 'Listens on a local port and carries every VNC connection to the guest display through the virtualmachines/vnc subresource. Starts remote-viewer, vncviewer or tigervnc when one is installed; with --proxy-only it prints the port and only proxies.',
    args: [VM_ARG],
    flags: [
      { name: 'proxy-only', kind: 'boolean', description: 'Do not start a viewer: print the local port and proxy until interrupted' },
      { name: 'port', kind: 'integer', valueName: 'PORT', description: 'Local port to listen on (default: any free port)', min: 0, max: 65_535 },
      { name: 'address', kind: 'string', valueName: 'ADDR', description: 'Local address to listen on (default 127.0.0.1)' },
    ],
    examples: [
      { command: 'kubectl keyvirt vnc web-1', description: 'Open the screen of web-1 in a local VNC viewer' },
      { command: 'kubectl keyvirt vnc web-1 --proxy-only --port 5901', description: 'Serve it on 127.0.0.1:5901 for a viewer of your choice' },
    ],
  },
  {
    name: 'port-forward',
    summary: 'Forward local ports to ports of the guest',
    details: 'Listens on each LOCAL port and forwards connections to the guest PORT through the Kubernetes API (the port must be declared on the VM interface with masquerade binding). LOCAL 0 or omitted picks a free port.',
    args: [VM_ARG, { name: '[LOCAL:]PORT', description: 'Local and guest port', variadic: true }],
    flags: [{ name: 'address', kind: 'string', valueName: 'ADDR', description: 'Local address to listen on (default 127.0.0.1)' }],
    examples: [
      { command: 'kubectl keyvirt port-forward web-1 8080:80', description: 'Serve the guest port 80 on localhost:8080' },
      { command: 'kubectl keyvirt port-forward web-1 5432', description: 'Serve the guest port 5432 on localhost:5432' },
    ],
  },
  {
    name: 'ssh',
    summary: 'ssh into the guest through a local port-forward',
    details: 'Forwards a local port to the guest ssh port and runs ssh against it; everything after -- goes to ssh (options, then a remote command). Host keys are remembered under the alias vm/NAME.NAMESPACE.',
    args: [{ name: '[USER@]VM', description: 'The guest user and the VirtualMachine' }],
    flags: [USER, GUEST_PORT, { name: 'identity-file', short: 'i', kind: 'string', valueName: 'FILE', description: 'Private key for ssh -i' }],
    examples: [
      { command: 'kubectl keyvirt ssh debian@web-1', description: 'Log in to web-1 as debian' },
      { command: 'kubectl keyvirt ssh root@web-1 -i ~/.ssh/id_ed25519 -- -o StrictHostKeyChecking=accept-new uptime', description: 'Run uptime with ssh options' },
    ],
    passThrough: 'ssh',
  },
  {
    name: 'scp',
    summary: 'Copy files to or from the guest through a local port-forward',
    details: 'One of SOURCE and DESTINATION is [USER@]VM:PATH, the other a local path. Everything after -- goes to scp.',
    args: [{ name: 'SOURCE', description: 'Local path or [USER@]VM:PATH' }, { name: 'DESTINATION', description: 'Local path or [USER@]VM:PATH' }],
    flags: [USER, GUEST_PORT, { name: 'identity-file', short: 'i', kind: 'string', valueName: 'FILE', description: 'Private key for scp -i' }, { name: 'recursive', short: 'r', kind: 'boolean', description: 'Copy directories' }],
    examples: [
      { command: 'kubectl keyvirt scp ./app.tar debian@web-1:/tmp/', description: 'Copy a file into web-1' },
      { command: 'kubectl keyvirt scp -r debian@web-1:/var/log ./logs', description: 'Copy a directory out of it' },
    ],
    passThrough: 'scp',
  },
  {
    name: 'guestinfo',
    summary: "Show the guest's OS, users and file systems (from its agent)",
    details: 'Reads the guest agent through the virtualmachines/guestinfo subresource; the VM must run with guestAgent: true.',
    args: [VM_ARG],
    flags: [{ name: 'output', short: 'o', kind: 'string', valueName: 'FORMAT', description: 'text (default) or json' }],
    examples: [
      { command: 'kubectl keyvirt guestinfo web-1', description: 'OS, logged-in users and file systems of web-1' },
      { command: 'kubectl keyvirt guestinfo web-1 -o json', description: 'The same as JSON' },
    ],
  },
  {
    name: 'image-upload',
    summary: 'Upload a disk image file into a VirtualMachineImage',
    details:
      'Sends FILE through the API server to the virtualmachineimages/upload subresource of IMAGE (a VirtualMachineImage with source upload: {}) in parts, each well within the API server\'s request timeout, showing the bytes sent; run again after an interruption, it resumes where the upload stands. Then it waits until the image is Ready or prints why it failed. The file may be raw, qcow2, VMDK (monolithic), VPC or VHDX; it is checked and converted like a download.',
    args: [{ name: 'IMAGE', description: 'The VirtualMachineImage' }],
    flags: [
      { name: 'file', short: 'f', kind: 'string', valueName: 'PATH', description: 'The image file to upload (required)' },
      { name: 'timeout', kind: 'integer', valueName: 'SECONDS', description: 'How long to wait for the import job and for Ready (default 600)', min: 1, max: 86_400 },
      { name: 'limit-rate', kind: 'integer', valueName: 'BYTES', description: 'Send at most BYTES per second (default: unlimited)', min: 1024, max: 2 ** 40 },
    ],
    examples: [
      { command: 'kubectl keyvirt image-upload debian-12 --file ./debian-12.qcow2', description: 'Upload a local qcow2 into the image debian-12 and wait until it is Ready' },
      { command: 'kubectl keyvirt image-upload disk-1 -f disk.img -n team-a', description: 'Upload a raw disk into team-a/disk-1' },
    ],
  },
  {
    name: 'version',
    summary: "Print the plugin's version and the API server's",
    details: 'Prints the plugin version; with a reachable cluster also the API server version and whether the KeyVirt APIs are served.',
    args: [],
    flags: [{ name: 'client', kind: 'boolean', description: "Only the plugin's version (no cluster needed)" }],
    examples: [{ command: 'kubectl keyvirt version', description: 'Versions of the plugin and the cluster' }],
  },
];

/** Verbs left out on purpose, with the reason `help` gives. */
export const NOT_YET: readonly { name: string; reason: string }[] = [];

export function verbSpec(name: string): VerbSpec | undefined {
  return VERBS.find((v) => v.name === name);
}
