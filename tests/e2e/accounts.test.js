// Accounts and sessions driven by the official Nakama JS client, unmodified.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { Client } = require('@heroiclabs/nakama-js');
const { startServer, rejectsEventually } = require('./harness');

const SERVER_KEY = 'defaultkey';

function client(port) {
  return new Client(SERVER_KEY, '127.0.0.1', String(port), false, 10000, true);
}

test('authenticate, account and session calls succeed; accounts persist across a restart', async () => {
  let server = await startServer();
  try {
    const c = client(server.port);
    const deviceId = `device-${Date.now()}-e2e`;
    const s1 = await c.authenticateDevice(deviceId, true, 'e2e_device_user');
    assert.equal(s1.created, true);
    assert.equal(s1.username, 'e2e_device_user');
    assert.ok(s1.user_id);

    const again = await c.authenticateDevice(deviceId, true);
    assert.equal(again.created, false);
    assert.equal(again.user_id, s1.user_id);

    const s2 = await c.authenticateCustom(`custom-${Date.now()}`, true, undefined, { tier: 'gold' });
    assert.equal(s2.created, true);
    assert.equal(s2.vars.tier, 'gold');
    assert.equal(s2.username.length, 10);

    const email = `player${Date.now()}@example.com`;
    const s3 = await c.authenticateEmail(email, 'correct horse battery', true);
    assert.equal(s3.created, true);
    await assert.rejects(c.authenticateEmail(email, 'wrong password!', false));

    const account = await c.getAccount(s1);
    assert.equal(account.user.id, s1.user_id);
    assert.equal(account.user.username, 'e2e_device_user');
    assert.deepEqual(account.devices.map((d) => d.id), [deviceId]);

    assert.equal(await c.updateAccount(s1, { display_name: 'Ada', location: 'Lyon' }), true);
    const updated = await c.getAccount(s1);
    assert.equal(updated.user.display_name, 'Ada');
    assert.equal(updated.user.location, 'Lyon');

    const refreshed = await c.sessionRefresh(s1, { mood: 'happy' });
    assert.equal(refreshed.user_id, s1.user_id);
    assert.equal(refreshed.vars.mood, 'happy');

    assert.equal(await c.sessionLogout(refreshed, refreshed.token, refreshed.refresh_token), true);
    await rejectsEventually(() => c.getAccount(refreshed));

    await server.stop();
    server = await startServer({ dataDir: server.dataDir });
    const c2 = client(server.port);
    const back = await c2.authenticateDevice(deviceId, false);
    assert.equal(back.user_id, s1.user_id);
    const persisted = await c2.getAccount(back);
    assert.equal(persisted.user.display_name, 'Ada');
  } finally {
    assert.equal(await server.stop(), 0);
  }
});
