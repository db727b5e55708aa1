// The analytics sample and the event archive, driven by the official Nakama JS client: events a
// client emits show up in analytics_stats and as lines in the archive file; a socket opened and
// closed is one session with a length; daily active users count distinct users.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Client } = require('@heroiclabs/nakama-js');
const { startServer } = require('./harness');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, fn, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await fn();
    if (last) return last;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

function archiveLines(file) {
  if (!fs.existsSync(file)) return [];
  return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l));
}

test('analytics_stats and the archive see what nakama-js clients emit; a socket is one session', async () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'nkhost-e2e-analytics-'));
  const archive = path.join(dataDir, 'events.jsonl');
  const server = await startServer({
    dataDir,
    plugins: ['analytics', 'event_archive'],
    args: ['--runtime.env', `EVENT_ARCHIVE_PATH=${archive}`],
  });
  try {
    const c = new Client('defaultkey', '127.0.0.1', String(server.port), false, 10000, false);
    const stamp = Date.now();
    const sessions = [];
    for (let i = 0; i < 3; i += 1) {
      sessions.push(await c.authenticateDevice(`analytics-e2e-${stamp}-${i}`, true, `an_player_${i}`));
    }
    // 3 users emit 2, 3 and 4 level_up events.
    let emitted = 0;
    for (let i = 0; i < sessions.length; i += 1) {
      for (let n = 0; n < i + 2; n += 1) {
        assert.equal(await c.emitEvent(sessions[i], { name: 'level_up', properties: { level: String(n) } }), true);
        emitted += 1;
      }
    }

    // One socket, open for a moment, then closed.
    const socket = c.createSocket(false, false);
    await socket.connect(sessions[0], false);
    await sleep(300);
    socket.disconnect(false);

    const stats = await until('analytics_stats to count the events and the session', async () => {
      const reply = await c.rpc(sessions[1], 'analytics_stats', {});
      const s = reply.payload;
      const byName = s.events.by_name.level_up;
      return byName && byName.total === emitted && s.sessions.ended === 1 ? s : null;
    });
    assert.equal(stats.events.by_name.level_up.last_hour, emitted);
    assert.equal(stats.top_events[0].name, 'level_up');
    assert.equal(stats.top_events[0].count, emitted);
    assert.equal(stats.sessions.started, 1);
    assert.equal(stats.sessions.active, 0);
    assert.equal(stats.sessions.length_ms.count, 1);
    assert.ok(stats.sessions.length_ms.max >= 250, JSON.stringify(stats.sessions));
    assert.equal(stats.daily_active_users[0].users, 3);

    // The archive: one whole JSON line per event, with the client's user and the event's id.
    const lines = await until('the archive to hold every event', () => {
      const all = archiveLines(archive);
      const levelUps = all.filter((l) => l.name === 'level_up');
      const ends = all.filter((l) => l.name === 'session_end');
      return levelUps.length === emitted && ends.length === 1 ? all : null;
    });
    const users = new Set(sessions.map((s) => s.user_id));
    for (const line of lines.filter((l) => l.name === 'level_up')) {
      assert.ok(users.has(line.user_id), JSON.stringify(line));
      assert.equal(line.external, true);
      assert.match(line.id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      assert.match(line.received_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    }
    const start = lines.find((l) => l.name === 'session_start');
    const end = lines.find((l) => l.name === 'session_end');
    assert.ok(start && end);
    assert.equal(start.session_id, end.session_id);
    assert.equal(start.user_id, sessions[0].user_id);
    assert.equal(new Set(lines.map((l) => l.id)).size, lines.length);
  } finally {
    assert.equal(await server.stop(), 0);
  }
});
