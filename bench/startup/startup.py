#!/usr/bin/env python3
"""Start-to-ready: time from the start of a process to its first answer on loopback.

usage: startup.py <build-dir> [starts]

Measures, `starts` times each (after one unmeasured start that creates nkhost's database):
  /bin/true              fork + exec + exit of a trivial process (the floor of any start)
  minimal Beast server   bench_http_minimal_beast: exec until its first HTTP answer
  nkhost                 exec until the first 200 from GET /healthcheck, with a data dir that
                         already holds its database and the no-op event handler plugin
and, for nkhost, the time from SIGTERM to the process' exit. Prints every sample and the
medians in milliseconds.
"""
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REQUEST = b"GET /healthcheck HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def first_answer(port, proc, deadline):
    """Polls 127.0.0.1:port until an HTTP status line arrives; returns the status code."""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before answering")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(REQUEST)
                data = s.recv(64)
                if data.startswith(b"HTTP/1."):
                    return int(data.split()[1])
        except OSError:
            pass
        time.sleep(0.0005)
    raise RuntimeError("no answer within the deadline")


def timed_start(argv, port, want=200):
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        status = first_answer(port, proc, t0 + 30)
        ready_ms = (time.monotonic() - t0) * 1000
        if status != want:
            raise RuntimeError(f"first answer was {status}, not {want}")
        t1 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        stop_ms = (time.monotonic() - t1) * 1000
        return ready_ms, stop_ms
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def show(name, samples):
    med = statistics.median(samples)
    print(f"  {name:<44} median {med:8.2f} ms   min {min(samples):8.2f}   max {max(samples):8.2f}"
          f"   ({len(samples)} starts)")
    return med


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build-bench"
    starts = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    nkhost = os.path.join(build, "bin", "nkhost")
    beast = os.path.join(build, "bin", "bench_http_minimal_beast")
    plugin = os.path.join(build, "bench", "events_http", "bench_noop_handler.so")
    work = tempfile.mkdtemp(prefix="nk-bench-startup-")
    try:
        data = os.path.join(work, "data")
        os.makedirs(os.path.join(data, "modules"))
        shutil.copy(plugin, os.path.join(data, "modules"))

        def nkhost_argv(port):
            return [nkhost, "--socket.address", "127.0.0.1", "--socket.port", str(port),
                    "--data_dir", data, "--logger.level", "warn"]

        # First start: creates the database; not measured.
        port = free_port()
        timed_start(nkhost_argv(port), port)

        true_ms, beast_ms, nk_ms, nk_stop_ms = [], [], [], []
        for _ in range(starts):  # interleaved, so a burst of machine load hits all alike
            t0 = time.monotonic()
            subprocess.run(["/bin/true"], check=True)
            true_ms.append((time.monotonic() - t0) * 1000)
            port = free_port()
            beast_ms.append(timed_start([beast, str(port), "2", "shared"], port)[0])
            port = free_port()
            ready, stop = timed_start(nkhost_argv(port), port)
            nk_ms.append(ready)
            nk_stop_ms.append(stop)

        print("start-to-ready on loopback (process start -> first HTTP answer), "
              f"{os.cpu_count()} cores")
        show("/bin/true (fork + exec + exit)", true_ms)
        show("minimal Beast server, first answer", beast_ms)
        med = show("nkhost, first 200 from /healthcheck", nk_ms)
        show("nkhost, SIGTERM -> exit (graceful stop)", nk_stop_ms)
        print(f"startup medians: nkhost {med:.2f} ms, minimal Beast {statistics.median(beast_ms):.2f} ms, "
              f"/bin/true {statistics.median(true_ms):.2f} ms")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
