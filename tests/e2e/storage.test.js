// Storage objects and wallets driven by the official Nakama JS client, unmodified, against the
// real server with samples/inventory (items and gold changed together by a plugin).
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { Client } = require('@heroiclabs/nakama-js');
const { startServer } = require('./harness');

function client(port) {
  return new Client('defaultkey', '127.0.0.1', String(port), false, 10000, true);
}

test('write, read, list and delete storage objects; conditional writes; public reads', async () => {
  const server = await startServer();
  try {
    const c = client(server.port);
    const alice = await c.authenticateDevice(`storage-alice-${Date.now()}`, true);
    const bob = await c.authenticateDevice(`storage-bob-${Date.now()}`, true);

    const acks = await c.writeStorageObjects(alice, [
      { collection: 'saves', key: 'slot1', value: { level: 3, hp: 42 } },
      { collection: 'saves', key: 'profile', value: { bio: 'hi' }, permission_read: 2, permission_write: 1 },
    ]);
    assert.equal(acks.acks.length, 2);
    assert.equal(acks.acks[0].user_id, alice.user_id);
    const version = acks.acks[0].version;

    const read = await c.readStorageObjects(alice, {
      object_ids: [{ collection: 'saves', key: 'slot1', user_id: alice.user_id }],
    });
    assert.equal(read.objects.length, 1);
    assert.deepEqual(read.objects[0].value, { level: 3, hp: 42 });
    assert.equal(read.objects[0].version, version);

    // Bob reads only the public one.
    const bobRead = await c.readStorageObjects(bob, {
      object_ids: [
        { collection: 'saves', key: 'slot1', user_id: alice.user_id },
        { collection: 'saves', key: 'profile', user_id: alice.user_id },
      ],
    });
    assert.deepEqual(bobRead.objects.map((o) => o.key), ['profile']);

    // A stale version is refused; the current one is accepted.
    await assert.rejects(c.writeStorageObjects(alice, [
      { collection: 'saves', key: 'slot1', value: { level: 4 }, version: '0000' },
    ]));
    await c.writeStorageObjects(alice, [{ collection: 'saves', key: 'slot1', value: { level: 4 }, version }]);

    const listed = await c.listStorageObjects(alice, 'saves', alice.user_id, 10);
    assert.deepEqual(listed.objects.map((o) => o.key).sort(), ['profile', 'slot1']);

    await c.deleteStorageObjects(alice, { object_ids: [{ collection: 'saves', key: 'slot1' }] });
    const gone = await c.readStorageObjects(alice, {
      object_ids: [{ collection: 'saves', key: 'slot1', user_id: alice.user_id }],
    });
    assert.equal((gone.objects || []).length, 0);
  } finally {
    await server.stop();
  }
});

test('the inventory sample: gold in the wallet, items in storage, changed together', async () => {
  const server = await startServer({ plugins: ['inventory'] });
  try {
    const c = client(server.port);
    const s = await c.authenticateDevice(`inventory-js-${Date.now()}`, true);
    const welcome = await c.rpc(s, 'claim_welcome', {});
    assert.deepEqual(welcome.payload, { gold: 100 });
    const bought = await c.rpc(s, 'buy_item', { item: 'sword' });
    assert.deepEqual(bought.payload, { item: 'sword', count: 1, gold: 70 });
    const account = await c.getAccount(s);
    assert.deepEqual(JSON.parse(account.wallet), { gold: 70 });
    const inv = await c.listStorageObjects(s, 'inventory', s.user_id, 10);
    assert.deepEqual(inv.objects.map((o) => [o.key, o.value.count]), [['sword', 1]]);
    // The client cannot write its inventory.
    await assert.rejects(c.writeStorageObjects(s, [{ collection: 'inventory', key: 'sword', value: { count: 99 } }]));
  } finally {
    await server.stop();
  }
});
