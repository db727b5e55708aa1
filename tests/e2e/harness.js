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

// Starts nkhost. opts.plugins: names of plugins in <build>/modules (samples), <build>/plugins
// (first-party plugins) or <build>/e2e-modules to load;
// opts.dataDir: reuse a data dir (for restarts); opts.args: extra CLI args.
async function startServer(opts = {}) {
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
    async waitForOutput(needle, timeoutMs = 15000) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        if (output.includes(needle)) return;
        await new Promise((r) => setTimeout(r, 25));
      }
      throw new Error(`timed out waiting for ${JSON.stringify(needle)} in server output:\n${output}`);
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null) child.kill(signal);
      return exited;
    },
  };
}

module.exports = { startServer, freePort, buildDir };
