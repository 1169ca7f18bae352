"""zp_testlib.py -- what the Python end-to-end tests share (test_compat.py,
test_compat_edges.py, test_chat_openai.py): the check/summary vocabulary, a
float comparison, and `zprefill serve` started on a Unix socket plus a
loopback TCP listener, ready when /health answers. Owns no state but the
failure count; each test program imports it from tests/ (its own folder)."""
import socket
import subprocess
import sys
import time

import requests

failures = 0


def check(name, ok, detail=""):
    """One line a check; a failure is counted and its detail cut short."""
    global failures
    if ok:
        print(f"ok   {name}")
    else:
        failures += 1
        print(f"FAIL {name}: {str(detail)[:600]}")


def close(a, b, tol=1e-5):
    return a is not None and b is not None and abs(a - b) <= tol * max(1.0, abs(b))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_server(z, model_dir, sock, log, extra=(), max_tokens=None, ready_s=60):
    """`z serve` on model_dir at the Unix socket sock and a free loopback port;
    stderr to log. Returns (process, port) once /health says 200; ends the
    test (exit 1) when the server exits or is not ready in ready_s, which is a
    liveness bound, not a speed."""
    port = free_port()
    argv = [z, "serve", "--model", model_dir, "--socket", sock, "--dtype", "fp32",
            "--listen-tcp", f"127.0.0.1:{port}", "--log-level", "warn"]
    if max_tokens is not None:
        argv += ["--max-tokens", str(max_tokens)]
    p = subprocess.Popen(argv + list(extra), stderr=log)
    deadline = time.time() + ready_s
    while time.time() < deadline:
        if p.poll() is not None:
            print("FAIL: the server exited at start")
            sys.exit(1)
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return p, port
        except requests.RequestException:
            pass
        time.sleep(0.05)
    p.kill()
    print(f"FAIL: the server was not ready in {ready_s} s")
    sys.exit(1)


def finish(name):
    """The summary line, and the exit status: 0 pass, 1 fail."""
    print(f"{name}: ok" if failures == 0 else f"{name}: FAIL ({failures} failures)")
    sys.exit(1 if failures else 0)
