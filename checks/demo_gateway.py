"""A demo gateway for the outside checks: `tongban demo` in a temporary home
on a free port, ready before the check starts, stopped (SIGTERM, then
SIGKILL) however the check ends."""
import contextlib, os, signal, socket, subprocess, sys, tempfile, time

import requests


@contextlib.contextmanager
def demo_gateway(binary, prefix="tongban-check-"):
    """Yields (base URL, CA file, home directory)."""
    home = tempfile.mkdtemp(prefix=prefix)
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    log = open(os.path.join(home, "gateway.log"), "w")
    proc = subprocess.Popen([binary, "demo", "--home", home, "--listen", f"127.0.0.1:{port}", "--residents", "200"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"https://127.0.0.1:{port}"
    ca = os.path.join(home, "certs/ca.pem")
    try:
        deadline = time.time() + 60
        while True:
            try:
                if requests.get(base + "/readyz", verify=ca, timeout=2).status_code == 200:
                    break
            except Exception:
                pass
            if time.time() > deadline or proc.poll() is not None:
                print("gateway did not start"); sys.exit(1)
            time.sleep(0.2)
        yield base, ca, home
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except Exception:
            os.killpg(proc.pid, signal.SIGKILL)
