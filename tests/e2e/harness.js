// Starts the real nkhost binary for end-to-end tests and gives the official
// Nakama JS client what it needs on Node 20 (a global WebSocket from `ws`).
'use strict';
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

globalThis.WebSocket = globalThis.WebSocket || require('ws');

const buildDir = process.env.NK_BUILD_DIR || path.resolve(__dirname, '../../build');
const nkhostBin = process.env.NKHOST_BIN || path.join(buildDir, 'bin', 'nkhost');

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

async function waitHealthy(port, child, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`nkhost exited with ${child.exitCode}`);
    try {
      const res = await fetch(`http://127.0.0.1:${port}/healthcheck`);
      if (res.status === 200) return;
    } catch (_) { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('nkhost did not become healthy');
}

// Starts one nkhost. opts.plugins: names of plugins in <build>/modules (samples), <build>/plugins
// (first-party plugins) or <build>/e2e-modules to load;
// opts.dataDir: reuse a data dir (for restarts); opts.args: extra CLI args.
// Resolves once read() (a server's output so far) contains `needle`; rejects at the deadline,
// with `what` and the output in the message.
async function waitForText(read, needle, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (read().includes(needle)) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${JSON.stringify(needle)} in ${what}:\n${read()}`);
}

async function startNode(opts = {}) {
  const dataDir = opts.dataDir || fs.mkdtempSync(path.join(os.tmpdir(), 'nkhost-e2e-'));
  const modules = path.join(dataDir, 'modules');
  fs.mkdirSync(modules, { recursive: true });
  for (const name of opts.plugins || []) {
    const candidates = ['modules', 'plugins', 'e2e-modules'].map((d) => path.join(buildDir, d, `${name}.so`));
    const found = candidates.find((p) => fs.existsSync(p));
    if (!found) throw new Error(`plugin ${name}.so not built (looked in ${candidates.join(', ')})`);
    fs.copyFileSync(found, path.join(modules, `${name}.so`));
  }
  const port = await freePort();
  const args = ['--socket.address', '127.0.0.1', '--socket.port', String(port), '--data_dir', dataDir,
    '--logger.level', 'debug', ...(opts.args || [])];
  const child = spawn(nkhostBin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => { output += d; });
  child.stderr.on('data', (d) => { output += d; });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve(code ?? 128)));
  try {
    await waitHealthy(port, child, 30000);
  } catch (e) {
    child.kill('SIGKILL');
    throw new Error(`${e.message}\n${output}`);
  }
  return {
    port,
    dataDir,
    output: () => output,
    // Resolves once the server's output contains `needle` (or rejects at the deadline).
    waitForOutput: (needle, timeoutMs = 15000) =>
      waitForText(() => output, needle, timeoutMs, 'server output'),
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null) child.kill(signal);
      return exited;
    },
  };
}

// NK_E2E_CLUSTER=1: every suite runs against two nodes on one PostgreSQL database behind HAProxy
// (samples/haproxy/haproxy.cfg), as a studio runs several nodes. The PostgreSQL server is
// nk_test_postgres_server's (one per test file), HAProxy and the nodes are started here.
const clusterMode = process.env.NK_E2E_CLUSTER === '1';

let postgres = null;
// A fresh database on this test file's PostgreSQL server (started on first use; it stops when
// this process ends and its stdin closes).
function postgresDatabase() {
  if (!postgres) {
    const child = spawn(path.join(buildDir, 'bin', 'nk_test_postgres_server'), [],
      { stdio: ['pipe', 'pipe', 'inherit'] });
    const waiting = [];
    let buffered = '';
    child.stdout.on('data', (d) => {
      buffered += d;
      let nl;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        const next = waiting.shift();
        // Only a pending request keeps this process alive for the server.
        if (waiting.length === 0) child.stdout.unref();
        if (next) next.resolve(line);
      }
    });
    child.on('exit', (code) => {
      for (const w of waiting.splice(0)) w.reject(new Error(`nk_test_postgres_server exited with ${code}`));
    });
    child.unref();
    child.stdout.unref();
    child.stdin.unref();
    postgres = { child, waiting, first: true };
  }
  return new Promise((resolve, reject) => {
    postgres.waiting.push({ resolve, reject });
    postgres.child.stdout.ref();
    // The server prints its first database by itself; later ones are asked for.
    if (postgres.first) postgres.first = false;
    else postgres.child.stdin.write('database\n');
  });
}

async function waitThroughBalancer(port, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let healthy = 0;
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/healthcheck`);
      healthy = res.status === 200 ? healthy + 1 : 0;
      if (healthy >= 10) return;
    } catch (_) { healthy = 0; }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('HAProxy did not forward to healthy nodes');
}

async function startCluster(opts = {}) {
  const dataDir = opts.dataDir || fs.mkdtempSync(path.join(os.tmpdir(), 'nkhost-e2e-cluster-'));
  // The database belongs to dataDir, as the SQLite file does: a restart on it finds its data.
  const marker = path.join(dataDir, 'postgres-address');
  const address = fs.existsSync(marker) ? fs.readFileSync(marker, 'utf8').trim() : await postgresDatabase();
  fs.writeFileSync(marker, `${address}\n`);
  const migrate = require('node:child_process').spawnSync(nkhostBin,
    ['migrate', 'up', '--database.address', address], { encoding: 'utf8' });
  if (migrate.status !== 0) throw new Error(`nkhost migrate up failed: ${migrate.stdout}${migrate.stderr}`);
  const nodes = [];
  for (const name of ['node-a', 'node-b']) {
    nodes.push(await startNode({
      ...opts,
      dataDir: path.join(dataDir, name),
      args: [...(opts.args || []), '--name', name, '--database.address', address],
    }));
  }
  const port = await freePort();
  const haproxy = spawn('haproxy', ['-f', path.resolve(__dirname, '../../samples/haproxy/haproxy.cfg'), '-db'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      NK_LB_BIND: `127.0.0.1:${port}`,
      NK_NODE_A: `127.0.0.1:${nodes[0].port}`,
      NK_NODE_B: `127.0.0.1:${nodes[1].port}`,
    },
  });
  let lbOutput = '';
  haproxy.stdout.on('data', (d) => { lbOutput += d; });
  haproxy.stderr.on('data', (d) => { lbOutput += d; });
  // The nodes first: they end their sockets themselves ("server shutdown"), through HAProxy.
  const stopAll = async (signal = 'SIGTERM') => {
    const codes = await Promise.all(nodes.map((n) => n.stop(signal)));
    if (haproxy.exitCode === null) haproxy.kill('SIGTERM');
    return codes.find((c) => c !== 0) ?? 0;
  };
  try {
    await waitThroughBalancer(port, 30000);
  } catch (e) {
    await stopAll('SIGKILL');
    throw new Error(`${e.message}\n${lbOutput}`);
  }
  // Both nodes' logs, read as one.
  const output = () => nodes.map((n) => n.output()).join('');
  return {
    port,
    dataDir,
    nodes,
    output,
    waitForOutput: (needle, timeoutMs = 15000) =>
      waitForText(output, needle, timeoutMs, "the nodes' output"),
    stop: stopAll,
  };
}

// One node on SQLite, or (NK_E2E_CLUSTER=1) two nodes on PostgreSQL behind HAProxy; the same
// interface either way.
function startServer(opts = {}) {
  return clusterMode ? startCluster(opts) : startNode(opts);
}

// Rejects at once on one node. On several nodes a revocation reaches the other node within
// about a second: the assertion is on the state it reaches (generous deadline).
async function rejectsEventually(call, timeoutMs = 10000) {
  const deadline = Date.now() + (clusterMode ? timeoutMs : 0);
  for (;;) {
    try {
      await call();
    } catch (_) {
      return;
    }
    if (Date.now() >= deadline) throw new Error('the call kept succeeding');
    await new Promise((r) => setTimeout(r, 50));
  }
}

module.exports = { startServer, startNode, freePort, buildDir, clusterMode, rejectsEventually };
