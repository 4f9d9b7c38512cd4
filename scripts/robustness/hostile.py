"""The "hostile" pass of scripts/robustness.sh (issue 32): small requests that
used to cost the service dearly, each sent while /healthz is timed and the
service's resident memory sampled; then a client sending its headers at a byte
a second, and 1,000 idle connections held open while another client is served.

Usage: hostile.py BASE_URL SERVER_PID IMPORT_ID CHART_IMPORT_ID [--report-only]
Prints one table and the figures; exits 1 when a limit is broken (unless
--report-only, for measuring an older build side by side).
"""

import http.client
import json
import socket
import statistics
import sys
import threading
import time
import urllib.parse

HEALTHZ_P99_MS = 50.0
MAX_ERROR_BODY = 64 * 1024
HEADER_TIMEOUT_CAP_S = 40.0


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Sampler:
    """Times GET /healthz on a kept-alive connection every 10 ms, and samples
    the service's VmRSS, until stopped."""

    def __init__(self, host, port, pid):
        self.host, self.port, self.pid = host, port, pid
        self.latencies, self.errors, self.peak = [], 0, 0
        self.running = True
        self.threads = [threading.Thread(target=self.healthz), threading.Thread(target=self.memory)]
        for t in self.threads:
            t.start()

    def healthz(self):
        conn = None
        while self.running:
            started = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                conn.request("GET", "/healthz")
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    self.errors += 1
                self.latencies.append((time.monotonic() - started) * 1000)
            except (OSError, http.client.HTTPException):
                self.errors += 1
                conn = None
            time.sleep(0.01)

    def memory(self):
        while self.running:
            self.peak = max(self.peak, rss_kib(self.pid))
            time.sleep(0.01)

    def stop(self):
        self.running = False
        for t in self.threads:
            t.join()
        lat = sorted(self.latencies) or [0.0]
        p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
        return {"p50": p(0.5), "p99": p(0.99), "max": lat[-1], "n": len(self.latencies),
                "errors": self.errors, "peak_kib": self.peak}


def send(host, port, method, path, body=None, headers=None):
    """One request on its own connection: status, answer size, seconds."""
    started = time.monotonic()
    conn = http.client.HTTPConnection(host, port, timeout=600)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        answer = response.read()
        return response.status, len(answer), time.monotonic() - started
    except (OSError, http.client.HTTPException) as error:
        return f"error: {error.__class__.__name__}", 0, time.monotonic() - started
    finally:
        conn.close()


def zeros(n):
    return b"[" + b"0," * (n - 1) + b"0]"


def hostile_requests(import_id, chart_import):
    relatives = lambda n: json.dumps({"relatives": list(range(10, 10 + n))}).encode()
    header = b"\x01\x02\x03\x04\x05\x06\x07," * (50 * 1024 * 1024 // 8) + b"\nA,1,2\n"
    jsonct = {"content-type": "application/json"}
    chart = f"/imports/{chart_import}/demand.svg?by=town,course"
    # name, [(method, path, body, headers)...] sent at once, expected statuses
    return [
        ("PATCH 200,000 unknown relatives (1.5 MB)",
         [("PATCH", f"/imports/{import_id}/citizens/1", relatives(200_000), jsonct)], {400, 413}),
        ("PATCH 10,000 unknown relatives",
         [("PATCH", f"/imports/{import_id}/citizens/1", relatives(10_000), jsonct)], {400}),
        ("POST statements: 5,000,000 zeros (10 MB)",
         [("POST", f"/imports/{import_id}/statements", zeros(5_000_000), jsonct)], {400}),
        # Not sent with --report-only (an older build would need ~9 GB).
        ("POST statements: 50,000,000 zeros (100 MB)",
         [("POST", f"/imports/{import_id}/statements", zeros(50_000_000 - 1), jsonct)], {400}),
        ("GET demand.svg, 30,000 groups, two at once",
         [("GET", chart, None, {}), ("GET", chart, None, {})], {200}),
        ("POST airports/upload: 50 MB header of control characters",
         [("POST", "/airports/upload", header, {"content-type": "text/csv"})], {400}),
        ("POST /imports as text/plain",
         [("POST", "/imports", b'{"citizens": []}', {"content-type": "text/plain"})], {415}),
        ("GET /jobs/%00/archives", [("GET", "/jobs/%00/archives", None, {})], {400}),
    ]


def run_hostile(host, port, pid, import_id, chart_import, report_only):
    print(f"{'request':<58} {'status':>9} {'answer B':>10} {'time s':>7} "
          f"{'RSS MiB':>8} {'+MiB':>6} {'healthz p50/p99/max ms':>24}")
    failures = []
    for name, requests, expected in hostile_requests(import_id, chart_import):
        if report_only and "100 MB" in name:
            print(f"{name:<58} not sent with --report-only")
            continue
        base = rss_kib(pid)
        sampler = Sampler(host, port, pid)
        time.sleep(0.2)
        results = [None] * len(requests)

        def one(i, request):
            results[i] = send(host, port, *request)

        threads = [threading.Thread(target=one, args=(i, r)) for i, r in enumerate(requests)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        time.sleep(0.2)
        figures = sampler.stop()
        status = ",".join(str(r[0]) for r in results)
        size = max(r[1] for r in results)
        seconds = max(r[2] for r in results)
        print(f"{name:<58} {status:>9} {size:>10} {seconds:>7.2f} {figures['peak_kib'] / 1024:>8.0f} "
              f"{(figures['peak_kib'] - base) / 1024:>6.0f} "
              f"{figures['p50']:>7.1f}/{figures['p99']:>6.1f}/{figures['max']:>7.1f}"
              + (f"  ({figures['errors']} healthz errors)" if figures["errors"] else ""))
        if any(r[0] not in expected for r in results):
            failures.append(f"{name}: status {status}, expected {sorted(expected)}")
        if expected != {200} and size > MAX_ERROR_BODY:
            failures.append(f"{name}: a {size}-byte error body")
        if figures["p99"] >= HEALTHZ_P99_MS or figures["errors"]:
            failures.append(f"{name}: /healthz p99 {figures['p99']:.1f} ms, {figures['errors']} errors")
    return failures


def slow_client(host, port):
    """Headers at a byte a second: seconds until the service closes the connection."""
    started = time.monotonic()
    sock = socket.create_connection((host, port))
    sock.settimeout(1.0)
    request = b"GET /healthz HTTP/1.1\r\nHost: slow\r\nX-Slow: " + b"y" * 200 + b"\r\n\r\n"
    for byte in request:
        try:
            sock.sendall(bytes([byte]))
            if sock.recv(1024) == b"":
                break
        except socket.timeout:
            pass
        except OSError:
            break
        if time.monotonic() - started > HEADER_TIMEOUT_CAP_S:
            sock.close()
            return None
    sock.close()
    return time.monotonic() - started


def timed_gets(host, port, path, n):
    conn = http.client.HTTPConnection(host, port, timeout=30)
    latencies = []
    for _ in range(n):
        started = time.monotonic()
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit(f"GET {path} answered {response.status}")
        latencies.append((time.monotonic() - started) * 1000)
    conn.close()
    latencies.sort()
    return latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]


def idle_connections(host, port, path, count=1000, gets=1500):
    """p50/p99 of a GET quiet, then with `count` idle connections held open
    (each reopened when the service closes it), and how many it closed."""
    quiet = timed_gets(host, port, path, gets)
    socks, closed, holding = [], [0], [True]
    for _ in range(count):
        socks.append(socket.create_connection((host, port)))

    def hold():
        while holding[0]:
            for i, sock in enumerate(socks):
                sock.setblocking(False)
                try:
                    if sock.recv(1) == b"":
                        closed[0] += 1
                        sock.close()
                        socks[i] = socket.create_connection((host, port))
                except BlockingIOError:
                    pass
                except OSError:
                    closed[0] += 1
                    socks[i] = socket.create_connection((host, port))
            time.sleep(0.2)

    holder = threading.Thread(target=hold)
    holder.start()
    time.sleep(1.0)
    busy = timed_gets(host, port, path, gets)
    # Held longer than the header timeout: the service closes idle ones.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and closed[0] < count:
        time.sleep(0.5)
    holding[0] = False
    holder.join()
    for sock in socks:
        sock.close()
    return quiet, busy, closed[0]


def main():
    base, pid, import_id, chart_import = sys.argv[1:5]
    report_only = "--report-only" in sys.argv
    url = urllib.parse.urlparse(base)
    host, port, pid = url.hostname, url.port, int(pid)
    failures = run_hostile(host, port, pid, import_id, chart_import, report_only)

    took = slow_client(host, port)
    if took is None:
        print(f"slow client (a header byte a second): still open after {HEADER_TIMEOUT_CAP_S:.0f} s")
        failures.append("the slow client was not dropped")
    else:
        print(f"slow client (a header byte a second): dropped after {took:.1f} s")

    path = "/airports/near?lat=-6.08&lon=145.39&radius_km=500"
    (q50, q99), (b50, b99), closed = idle_connections(host, port, path)
    ratio = b99 / q99 if q99 else float("inf")
    print(f"GET {path}: quiet p50 {q50:.2f} ms p99 {q99:.2f} ms; with 1,000 idle connections "
          f"p50 {b50:.2f} ms p99 {b99:.2f} ms (p99 x{ratio:.2f}); the service closed {closed} idle "
          f"connections within the hold")
    if ratio > 3:
        failures.append(f"p99 with 1,000 idle connections is {ratio:.2f} x the quiet one (limit 3)")
    if closed == 0:
        failures.append("no idle connection was closed")

    for failure in failures:
        print(f"FAILED: {failure}")
    sys.exit(1 if failures and not report_only else 0)


if __name__ == "__main__":
    main()
