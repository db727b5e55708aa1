// Two nodes behind HAProxy (NK_E2E_CLUSTER=1 only): a node that dies is taken out of the
// rotation and the other keeps serving every request.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { Client } = require('@heroiclabs/nakama-js');
const { startServer, clusterMode } = require('./harness');

test('killing one node: the other serves every request through the balancer', async () => {
  assert.ok(clusterMode, 'run with NK_E2E_CLUSTER=1');
  const cluster = await startServer();
  try {
    const c = new Client('defaultkey', '127.0.0.1', String(cluster.port), false, 10000, false);
    const session = await c.authenticateDevice(`cluster-kill-${Date.now()}`, true, 'survivor');
    // Round robin: both nodes answer while both are up.
    for (let i = 0; i < 4; i += 1) assert.equal((await c.getAccount(session)).user.id, session.user_id);

    await cluster.nodes[0].stop('SIGKILL');
    // Requests that reach the dead node are retried on the other (option redispatch), and its
    // failed health checks take it out of the rotation: no request fails.
    for (let i = 0; i < 40; i += 1) {
      const account = await c.getAccount(session);
      assert.equal(account.user.username, 'survivor');
    }
    const again = await c.authenticateDevice(`cluster-kill-${Date.now()}-2`, true);
    assert.equal(again.created, true);
  } finally {
    await cluster.stop();
  }
});
