// The HighAvailability condition of an HA VM, written by the VM controller (the only
// writer of VM status): False NoSharedStorage when its lease cannot be kept, False
// RestartBudgetExhausted when no further HA restart is allowed now, else True Protected.
import type { Condition, VirtualMachine } from '@keyvirt/crds';
import type { BudgetState, RestartBudget } from './restart-budget.ts';

export function haCondition(
  vm: VirtualMachine,
  noSharedStorage: string | undefined,
  budget: BudgetState,
  limits: RestartBudget,
  launcherWithoutLease = false,
): Omit<Condition, 'lastTransitionTime'> | undefined {
  if (!vm.spec.highAvailability.enabled) return undefined;
  if (noSharedStorage !== undefined) {
    return { type: 'HighAvailability', status: 'False', reason: 'NoSharedStorage', message: `the VM is not restarted elsewhere: ${noSharedStorage}` };
  }
  if (launcherWithoutLease) {
    return { type: 'HighAvailability', status: 'False', reason: 'LauncherWithoutLease', message: 'the launcher was started before high availability was enabled and holds no storage lease; restart the VM to protect it' };
  }
  if (budget.exhausted) {
    const until = budget.retryAt === undefined ? '' : `; the next one is allowed after ${new Date(budget.retryAt).toISOString()}`;
    return {
      type: 'HighAvailability',
      status: 'False',
      reason: 'RestartBudgetExhausted',
      message: `${budget.recent.length} HA restarts within ${Math.round(limits.windowMs / 1000)} s (at most ${limits.maxRestarts})${until}`,
    };
  }
  return {
    type: 'HighAvailability',
    status: 'True',
    reason: 'Protected',
    message: `the VM is restarted on another node if its launcher is lost, once its storage lease has expired (${limits.maxRestarts - budget.recent.length} of ${limits.maxRestarts} restarts left in the window)`,
  };
}
