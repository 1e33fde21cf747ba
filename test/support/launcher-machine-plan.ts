// The machine plan a launcher builds for a test VM (same configuration, same planner,
// same seed), for benchmarks that run the identical guest under bare QEMU next to it.
import { LauncherConfigSchema } from '@keyvirt/launcher/api';
import { buildNoCloudSeed } from '../../launcher/src/cloud-init/seed.ts';
import { probeDisks, statePaths } from '../../launcher/src/launch.ts';
import type { Accelerator, MachinePlan } from '../../launcher/src/qemu/command-line.ts';
import { planMachine } from '../../launcher/src/qemu/machine-plan.ts';
import { launcherConfig, type SharedVm } from './launcher-process.ts';

/** The plan for `vm` with its sockets, serial log and seed under `stateDir`. */
export async function launcherMachinePlan(vm: SharedVm, accelerator: Accelerator, stateDir: string): Promise<MachinePlan> {
  const config = LauncherConfigSchema.parse(launcherConfig(vm, { mode: 'run', address: '127.0.0.1', tokenFile: '/dev/null', stateDir }));
  const seed =
    vm.userData === undefined ? undefined : await buildNoCloudSeed({ instanceId: vm.uid, hostname: config.vm.name, userData: vm.userData }, stateDir);
  return planMachine({
    config,
    accelerator,
    paths: statePaths(stateDir),
    diskCache: await probeDisks(config),
    ...(seed === undefined ? {} : { cloudInitSeed: seed }),
  });
}
