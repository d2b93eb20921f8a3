#!/usr/bin/python3
"""TCP throughput between two sites of the emulated WAN (an iperf-like check of the tbf shaping).

    linkcheck.py serve --bind ADDR --port P               prints one JSON object when the sender is done
    linkcheck.py send --to ADDR --port P --seconds S      streams zeros for S seconds
    linkcheck.py pair --from NS_A --to-ns NS_B --to ADDR [--port P] [--seconds S]
                                                          runs both with `ip netns exec`; prints the JSON

The receiver timestamps every read and reports the rate over the steady part of the
transfer: from 0.5 s after the first byte (TCP slow start and the shaper's initial burst
are excluded) to the last byte. Goodput (TCP payload) is below the shaped line rate by
the header overhead, ~3-5% with 1500-byte frames.
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import time

CHUNK = 1 << 16


def serve(bind, port, ready_fd=None):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((bind, port))
    srv.listen(1)
    print("ready", file=sys.stderr, flush=True)
    srv.settimeout(30)
    conn, peer = srv.accept()
    marks = []  # (time, bytes so far)
    total = 0
    while True:
        data = conn.recv(CHUNK)
        if not data:
            break
        total += len(data)
        marks.append((time.monotonic(), total))
    conn.close()
    srv.close()
    if len(marks) < 2:
        return {"error": "no data received"}
    t_first = marks[0][0]
    steady = [(t, b) for t, b in marks if t >= t_first + 0.5] or marks
    t0, b0 = steady[0]
    t1, b1 = marks[-1]
    rate = (b1 - b0) * 8 / (t1 - t0) if t1 > t0 else 0.0
    return {"bytes": total, "seconds": marks[-1][0] - t_first, "steady_seconds": t1 - t0,
            "goodput_mbit_s": rate / 1e6, "overall_mbit_s": total * 8 / max(1e-9, marks[-1][0] - t_first) / 1e6,
            "peer": peer[0]}


def send(to, port, seconds):
    deadline = time.monotonic() + 10
    while True:
        try:
            sock = socket.create_connection((to, port), timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    buf = bytes(CHUNK)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sock.sendall(buf)
    sock.shutdown(socket.SHUT_WR)
    sock.close()


def pair(ns_from, ns_to, to, port, seconds):
    me = os.path.abspath(__file__)
    server = subprocess.Popen(["ip", "netns", "exec", ns_to, sys.executable, me, "serve", "--bind", to,
                               "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        server.stderr.readline()  # "ready"
        subprocess.run(["ip", "netns", "exec", ns_from, sys.executable, me, "send", "--to", to, "--port", str(port),
                        "--seconds", str(seconds)], check=True, timeout=seconds + 30)
        out, err = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    if server.returncode != 0:
        raise RuntimeError(f"link check receiver failed: {err}")
    result = json.loads(out)
    result.update({"from": ns_from, "to": ns_to, "to_addr": to, "test_seconds": seconds})
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--bind", required=True)
    s.add_argument("--port", type=int, default=5201)
    c = sub.add_parser("send")
    c.add_argument("--to", required=True)
    c.add_argument("--port", type=int, default=5201)
    c.add_argument("--seconds", type=float, default=3)
    b = sub.add_parser("pair")
    b.add_argument("--from", dest="ns_from", required=True)
    b.add_argument("--to-ns", required=True)
    b.add_argument("--to", required=True)
    b.add_argument("--port", type=int, default=5201)
    b.add_argument("--seconds", type=float, default=3)
    args = p.parse_args()
    if args.cmd == "serve":
        print(json.dumps(serve(args.bind, args.port)), flush=True)
    elif args.cmd == "send":
        send(args.to, args.port, args.seconds)
    else:
        print(json.dumps(pair(args.ns_from, args.to_ns, args.to, args.port, args.seconds)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
