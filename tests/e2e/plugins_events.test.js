// The quickstart plugin and the event pipeline, driven by the official Nakama JS client.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { Client } = require('@heroiclabs/nakama-js');
const { startServer } = require('./harness');

test('quickstart: updateAccount emits account_updated to processEvent; rpc reaches the sample RPC; emitEvent reaches handlers', async () => {
  const server = await startServer({ plugins: ['quickstart', 'session_recorder'] });
  try {
    await server.waitForOutput('Server loaded.');
    const c = new Client('defaultkey', '127.0.0.1', String(server.port), false, 10000, false);
    const session = await c.authenticateDevice(`quickstart-${Date.now()}`, true, 'qs_player');

    assert.equal(await c.updateAccount(session, { display_name: 'Quick' }), true);
    // The after-hook emits account_updated (external=false); processEvent logs it at debug.
    await server.waitForOutput('process evt: name:account_updated properties:map[] external:false');
    // Like Go's context.Background(), the quickstart emits with an empty context.
    await server.waitForOutput('recorder event name=account_updated sid= uid= user= lang= mode=event external=false props: end');

    const reply = await c.rpc(session, 'hello', { level: 3 });
    assert.deepEqual(reply.payload, { hello: 'qs_player', payload: { level: 3 } });

    assert.equal(await c.emitEvent(session, { name: 'level_up', properties: { level: '4', hero: 'ada' } }), true);
    await server.waitForOutput(
      `recorder event name=level_up sid= uid=${session.user_id} user=qs_player lang= mode=event external=true props: hero=[ada] level=[4] end`);
    // The quickstart's processEvent does not know level_up and says so.
    await server.waitForOutput('unrecognised evt: name:level_up');
  } finally {
    assert.equal(await server.stop(), 0);
  }
});
