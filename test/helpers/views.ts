/** The three places a user looks at a run's state, for tests that assert they agree (issue 12: one truth). */
import assert from 'node:assert/strict';
import type { Hub } from '../../src/hub/hub';
import type { RunManager } from '../../src/supervisor/runManager';
import type { RunStateName } from '../../src/protocol/messages';
import { applyMessage, emptyRun, type RunModel } from '../../src/viewmodel/runModel';
import { until } from './tmp';

/** What a dashboard page holds: the hub's snapshot and then its events, folded with the one reducer. */
function pageView(hub: Hub, runId: string): { model: () => RunModel; close: () => void } {
  let m = emptyRun(runId);
  const close = hub.subscribe(runId, (msg) => {
    if (msg.type === 'snapshot') {
      if (!msg.continued) m = emptyRun(runId); // later parts of a long run's snapshot append
      for (const e of msg.events) applyMessage(m, e);
    } else if (msg.type === 'event') applyMessage(m, msg.event);
  });
  return { model: () => m, close };
}

/**
 * The same state in the three places a user looks: the Runs tree (RunManager's model), the hub's run list (the
 * browser's run picker) and the page (the hub's snapshot folded). Waits up to `ms` for them to agree on `state`.
 */
export async function assertSameState(runs: RunManager, hub: Hub, runId: string, state: RunStateName, ms = 5000): Promise<void> {
  await until(() => hub.run(runId) !== undefined, ms); // past runs are opened on the hub one at a time
  const page = pageView(hub, runId);
  try {
    const views = () => ({ tree: runs.get(runId).model.state, hub: hub.listRuns().find((r) => r.runId === runId)?.state, page: page.model().state });
    await until(() => Object.values(views()).every((s) => s === state), ms);
    assert.deepEqual(views(), { tree: state, hub: state, page: state });
    const tree = runs.get(runId).model;
    assert.equal(page.model().step, tree.step, 'the page and the tree agree on the step');
    assert.equal(page.model().stateReason, tree.stateReason, 'and on the reason');
  } finally { page.close(); }
}

