#!/usr/bin/env python3
"""otlp-sink.py PORT: a minimal OTLP/HTTP trace receiver for benchmarks.

Accepts POST /v1/traces on 127.0.0.1:PORT, answers 200 with an empty
ExportTraceServiceResponse (an empty protobuf message is zero bytes) and
counts the export requests and bytes it received; on SIGTERM it prints
them to stderr and exits. It decodes nothing: it stands in for a collector
so that `cairn serve` with tracing on pays the real export cost.
"""
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

requests = 0
received = 0


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        global requests, received
        n = int(self.headers.get("Content-Length", "0"))
        received += len(self.rfile.read(n))
        requests += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def stop(*_):
    print(f"otlp-sink: {requests} export requests, {received} bytes", file=sys.stderr, flush=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
