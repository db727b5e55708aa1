// Realtime part of the soak: holds SOCKETS WebSocket sessions on nkhost for DURATION seconds,
// each sending an app-level ping every second, and re-opens CHURN of them every second (the
// oldest are closed, new ones opened on the same users). Prints one summary line at the end.
//
// usage: node sockets.js <port> <sockets> <duration_sec> <churn_per_sec> <ws module dir>
'use strict';
const [port, count, duration, churn, wsDir] = process.argv.slice(2);
const WebSocket = require(require.resolve('ws', { paths: [wsDir] }));
const base = `http://127.0.0.1:${port}`;
const basic = 'Basic ' + Buffer.from('defaultkey:').toString('base64');

const stats = { opened: 0, failed: 0, lost: 0, pongs: 0, closedByUs: 0 };
const live = [];  // { ws, token, timer }

function open(token) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws?token=${token}&format=json`);
  const entry = { ws, token, timer: null, ours: false, up: false };
  ws.on('open', () => {
    entry.up = true;
    stats.opened++;
    let cid = 0;
    entry.timer = setInterval(() => ws.send(JSON.stringify({ cid: String(++cid), ping: {} })), 1000);
  });
  ws.on('message', (data) => { if (String(data).includes('"pong"')) stats.pongs++; });
  ws.on('error', () => {});
  ws.on('close', () => {
    clearInterval(entry.timer);
    if (!entry.up) stats.failed++;
    else if (!entry.ours) stats.lost++;
    const i = live.indexOf(entry);
    if (i >= 0) live.splice(i, 1);
  });
  live.push(entry);
}

function close(entry) {
  entry.ours = true;
  stats.closedByUs++;
  entry.ws.close();
}

async function main() {
  const tokens = [];
  for (let i = 0; i < Number(count); i++) {
    const r = await fetch(`${base}/v2/account/authenticate/device?create=true`, {
      method: 'POST',
      headers: { Authorization: basic, 'Content-Type': 'application/json' },
      body: JSON.stringify({ id: `soak-socket-${i}-device` }),
    });
    if (r.status !== 200) throw new Error(`authenticate: ${r.status}`);
    tokens.push((await r.json()).token);
  }
  tokens.forEach(open);
  const churnTimer = setInterval(() => {
    for (const entry of live.filter((e) => e.up && !e.ours).slice(0, Number(churn))) {
      close(entry);
      open(entry.token);
    }
  }, 1000);
  await new Promise((resolve) => setTimeout(resolve, Number(duration) * 1000));
  clearInterval(churnTimer);
  const held = live.filter((e) => e.up && !e.ours).length;
  for (const entry of [...live]) close(entry);
  const until = Date.now() + 10000;
  while (live.length && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  console.log(`sockets: held ${held} at the end, opened ${stats.opened}, failed ${stats.failed}, ` +
              `lost ${stats.lost}, pongs ${stats.pongs}`);
  process.exit(0);
}

main().catch((e) => { console.error(`sockets: ${e.message}`); process.exit(1); });
