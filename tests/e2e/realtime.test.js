// The realtime socket with the official Nakama JS client: connect, heartbeats, disconnect,
// and the built-in session events seen by a plugin.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { Client } = require('@heroiclabs/nakama-js');
const { startServer } = require('./harness');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test('socket connects, heartbeats are answered, disconnect gives session_start then session_end with reason ""', async () => {
  const server = await startServer({ plugins: ['session_recorder'] });
  try {
    const c = new Client('defaultkey', '127.0.0.1', String(server.port), false, 10000, false);
    const session = await c.authenticateDevice(`rt-${Date.now()}-device`, true, 'rt_player');
    const socket = c.createSocket(false, false);
    socket.setHeartbeatTimeoutMs(1000);
    let heartbeatTimeouts = 0;
    let disconnected = false;
    socket.onheartbeattimeout = () => { heartbeatTimeouts += 1; };
    socket.ondisconnect = () => { disconnected = true; };
    await socket.connect(session, false);

    const start = /recorder session_start name=session_start sid=([0-9a-f-]{36}) uid=(\S+) user=rt_player lang=en mode=event external=false props: end/;
    await server.waitForOutput('recorder session_start');
    const m = server.output().match(start);
    assert.ok(m, server.output());
    assert.equal(m[2], session.user_id);
    const sid = m[1];

    // Several heartbeat intervals (1 s each): every ping must be answered.
    await sleep(3500);
    assert.equal(heartbeatTimeouts, 0);
    assert.equal(disconnected, false);

    socket.disconnect(false);
    await server.waitForOutput(`recorder session_end name=session_end sid=${sid} uid=${session.user_id} user=rt_player lang=en mode=event external=false props: reason=[] end`);
    const out = server.output();
    assert.ok(out.indexOf('recorder session_start') < out.indexOf('recorder session_end'));
    assert.equal(out.split('recorder session_end').length - 1, 1);
  } finally {
    assert.equal(await server.stop(), 0);
  }
});

test('server shutdown ends open sessions with reason "server shutdown" before exit', async () => {
  const server = await startServer({ plugins: ['session_recorder'] });
  const c = new Client('defaultkey', '127.0.0.1', String(server.port), false, 10000, false);
  const session = await c.authenticateDevice(`rt-${Date.now()}-shutdown`, true);
  const socket = c.createSocket(false, false);
  await socket.connect(session, false);
  await server.waitForOutput('recorder session_start');
  assert.equal(await server.stop(), 0);
  assert.match(server.output(), /recorder session_end name=session_end sid=[0-9a-f-]{36} .*props: reason=\[server shutdown\] end/);
});
