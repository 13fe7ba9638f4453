// What quitting the desktop app does with the VMs that run (issue 12): the VMs belong
// to the per-user service, so by default they keep running after the app goes; when
// some run, the app asks once (Keep running, Save state, Shut down, Force off, Cancel,
// or a choice per VM) and carries the choice out through the service before it quits.
//
// No 'electron' import here: main.ts hands in a QuitUi made of Electron's dialogs
// (quit-dialogs.ts), the unit test a scripted one (electron/main/__tests__/quit-plan.test.ts),
// against a real service socket.
import type { VmState, VmSummary } from '../common/contracts/vm';
import type { RpcClient } from '../services/rpc-socket';

/** What happens to a running VM when the app quits. */
export type QuitChoice = 'keep' | 'save' | 'shutdown' | 'forceoff';

/** The states in which a VM still runs in the service (an engine host exists). */
export const ACTIVE_STATES: readonly VmState[] = ['starting', 'running', 'paused', 'shuttingdown'];
export const isActive = (s: VmState): boolean => ACTIVE_STATES.includes(s);

export const CHOICE_LABELS: Record<QuitChoice, string> = {
  keep: 'Keep running in the background',
  save: 'Save state',
  shutdown: 'Shut down',
  forceoff: 'Force off',
};

/** What the app shows; each question may be answered 'cancel' (the quit is called off). */
export interface QuitUi {
  /** One question for all the running VMs: a choice for all, or 'each' to ask per VM. */
  chooseAll(vms: VmSummary[]): Promise<QuitChoice | 'each' | 'cancel'>;
  /** The question for one VM (the i-th of n), after chooseAll answered 'each'. */
  chooseOne(vm: VmSummary, i: number, n: number): Promise<QuitChoice | 'cancel'>;
  /**
   * Shut Down progress: the VMs still shutting down. Resolves with the user's answer
   * ('forceoff' the rest, or 'cancel': stop waiting and stay), or anything once `signal`
   * aborts (the list changed or all are off: the plan asks again or goes on).
   */
  waiting(pending: VmSummary[], signal: AbortSignal): Promise<'forceoff' | 'cancel' | 'closed'>;
  /** Some choices failed (each with why): 'quit' anyway (those VMs stay as they are) or 'stay'. */
  failed(outcomes: VmOutcome[]): Promise<'quit' | 'stay'>;
}

export interface VmOutcome {
  uuid: string;
  name: string;
  choice: QuitChoice;
  /** done: it did what was chosen (or the VM was already off); failed: `error` says why, the VM is as `state` says. */
  result: 'done' | 'failed';
  /** The VM's state afterwards, when known. */
  state?: VmState;
  error?: string;
}

export interface QuitResult {
  /** Whether the app goes on quitting. */
  quit: boolean;
  /** What was done per VM (empty when nothing ran, or the quit was cancelled before anything was done). */
  outcomes: VmOutcome[];
  /** Why the quit stops, when it does: 'cancel' (the user said so), 'failed' (the user stayed after a failure). */
  why?: 'cancel' | 'failed';
}

export type QuitClient = Pick<RpcClient, 'request'>;

export interface QuitPlanOptions {
  /** How often the VMs' states are read while waiting for them to go off, in ms. */
  pollMs?: number;
  /** How long a Save state or a Force off may take to leave the VM off, in ms. */
  stopTimeoutMs?: number;
  /** How long listing the VMs may take before the app quits without asking (a hung service must not hold quit), in ms. */
  listTimeoutMs?: number;
  log?: (line: string) => void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} took longer than ${Math.round(ms / 1000)} s`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** The VMs that run in the service now (running, paused, starting, shutting down). */
export async function activeVms(client: QuitClient): Promise<VmSummary[]> {
  return (await client.request('vm.list', {})).filter((v) => isActive(v.state));
}

async function states(client: QuitClient): Promise<Map<string, VmState>> {
  return new Map((await client.request('vm.list', {})).map((v) => [v.uuid, v.state]));
}

/**
 * Asks (ui) and carries out what happens to the running VMs when the app quits.
 * Nothing runs: quits without asking. Cancel at any question: nothing is done and the
 * quit is called off. Otherwise each VM's choice is carried out through the service;
 * when one fails the user is told which and why and decides (quit anyway, or stay).
 */
export async function quitFlow(client: QuitClient | null, ui: QuitUi, opts: QuitPlanOptions = {}): Promise<QuitResult> {
  const log = opts.log ?? (() => undefined);
  if (!client) return { quit: true, outcomes: [] }; // no service to ask: its VMs keep running anyway
  let vms: VmSummary[];
  try {
    vms = await withTimeout(activeVms(client), opts.listTimeoutMs ?? 5000, 'listing the VMs');
  } catch (e) {
    log(`vireo: quitting without asking about the VMs: ${(e as Error).message}`);
    return { quit: true, outcomes: [] };
  }
  if (!vms.length) return { quit: true, outcomes: [] };

  const all = await ui.chooseAll(vms);
  if (all === 'cancel') return { quit: false, outcomes: [], why: 'cancel' };
  const plan: Array<{ vm: VmSummary; choice: QuitChoice }> = [];
  for (const [i, vm] of vms.entries()) {
    const choice = all === 'each' ? await ui.chooseOne(vm, i, vms.length) : all;
    if (choice === 'cancel') return { quit: false, outcomes: [], why: 'cancel' };
    plan.push({ vm, choice });
  }

  const outcomes = await carryOut(client, plan, ui, opts);
  if (outcomes === 'cancel') return { quit: false, outcomes: [], why: 'cancel' };
  const failed = outcomes.filter((o) => o.result === 'failed');
  for (const o of failed) log(`vireo: quitting: ${o.name}: ${CHOICE_LABELS[o.choice]} failed: ${o.error}`);
  if (failed.length && (await ui.failed(outcomes)) === 'stay') return { quit: false, outcomes, why: 'failed' };
  return { quit: true, outcomes };
}

/**
 * Carries out each VM's choice through the service: Save state and Force off wait until
 * the VM is off (Saved / Shut off); Shut down presses the power button of each and waits,
 * showing ui.waiting, until every guest has powered off, the user forces off the rest, or
 * cancels ('cancel': the quit stops, the guests go on shutting down).
 */
export async function carryOut(
  client: QuitClient,
  plan: Array<{ vm: VmSummary; choice: QuitChoice }>,
  ui: Pick<QuitUi, 'waiting'>,
  opts: QuitPlanOptions = {},
): Promise<VmOutcome[] | 'cancel'> {
  const pollMs = opts.pollMs ?? 250;
  const stopTimeoutMs = opts.stopTimeoutMs ?? 120_000;
  const out = new Map<string, VmOutcome>();
  const put = (vm: VmSummary, choice: QuitChoice, result: VmOutcome['result'], state?: VmState, error?: string) =>
    out.set(vm.uuid, { uuid: vm.uuid, name: vm.name, choice, result, ...(state ? { state } : {}), ...(error ? { error } : {}) });

  /** Waits until the VM is off; its state then (or the last seen, with a timeout error). */
  const untilOff = async (uuid: string, ms: number): Promise<VmState> => {
    const end = Date.now() + ms;
    for (;;) {
      const st = (await states(client)).get(uuid);
      if (st === undefined) throw new Error('it was deleted');
      if (!isActive(st)) return st;
      if (Date.now() >= end) throw new Error(`it is still ${st} after ${Math.round(ms / 1000)} s`);
      await sleep(pollMs);
    }
  };

  /** An action failed: done anyway when the VM is already off (it stopped meanwhile), else the error. */
  const failedOrOff = async (vm: VmSummary, choice: QuitChoice, e: unknown) => {
    const st = await states(client).then((m) => m.get(vm.uuid), () => undefined);
    if (st !== undefined && !isActive(st)) return put(vm, choice, 'done', st);
    put(vm, choice, 'failed', st, (e as Error).message);
  };

  const stop = async (vm: VmSummary, choice: 'save' | 'forceoff') => {
    try {
      await client.request('vm.action', { uuid: vm.uuid, action: choice });
      const st = await untilOff(vm.uuid, stopTimeoutMs);
      if (choice === 'save' && st !== 'saved') return put(vm, choice, 'failed', st, `it is ${st} afterwards, with no saved state`);
      put(vm, choice, 'done', st);
    } catch (e) {
      await failedOrOff(vm, choice, e);
    }
  };

  const pressed: VmSummary[] = [];
  const press = async (vm: VmSummary) => {
    try {
      const st = (await states(client)).get(vm.uuid);
      if (st === 'shuttingdown') return void pressed.push(vm); // already asked to: wait for it
      // A paused guest can't react to the power button: it runs again first.
      if (st === 'paused') await client.request('vm.action', { uuid: vm.uuid, action: 'resume' });
      await client.request('vm.action', { uuid: vm.uuid, action: 'shutdown' });
      pressed.push(vm);
    } catch (e) {
      await failedOrOff(vm, 'shutdown', e);
    }
  };

  await Promise.all(
    plan.map(({ vm, choice }) => {
      if (choice === 'keep') return void put(vm, 'keep', 'done', vm.state);
      if (choice === 'shutdown') return press(vm);
      return stop(vm, choice);
    }),
  );

  // Shut down: wait for the guests, showing which are left; the user may force off the rest or stop waiting.
  let pending = pressed;
  while (pending.length) {
    const ac = new AbortController();
    const before = new Set(pending.map((v) => v.uuid));
    const answer = ui.waiting(pending, ac.signal);
    let changed = false;
    const watch = (async () => {
      while (!changed) {
        await sleep(pollMs);
        if (changed) return;
        const now = await states(client).catch(() => null);
        if (now && [...before].some((u) => !isActive(now.get(u) ?? 'shutoff'))) return;
      }
    })();
    const r = await Promise.race([answer, watch.then(() => 'changed' as const)]);
    changed = true;
    ac.abort();
    const now = await states(client).catch(() => new Map<string, VmState>());
    const off = (u: string) => !isActive(now.get(u) ?? 'shutoff');
    for (const vm of pending.filter((v) => off(v.uuid))) put(vm, 'shutdown', 'done', now.get(vm.uuid) ?? 'shutoff');
    pending = pending.filter((v) => !off(v.uuid));
    if (r === 'cancel') return 'cancel';
    if (r === 'forceoff') {
      // Forced off on the user's word: reported as Force off, which is what was done.
      await Promise.all(pending.map((vm) => stop(vm, 'forceoff')));
      pending = [];
    }
  }
  return plan.map(({ vm }) => out.get(vm.uuid)!);
}

/** A line per VM for a dialog: what was chosen and what came of it. */
export function describeOutcome(o: VmOutcome): string {
  const what = CHOICE_LABELS[o.choice];
  if (o.result === 'done') return `${o.name}: ${what} — done${o.state ? ` (${o.state})` : ''}`;
  return `${o.name}: ${what} failed: ${o.error ?? 'unknown error'}${o.state ? ` (it is ${o.state})` : ''}`;
}
