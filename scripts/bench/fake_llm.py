"""A fake OpenAI-compatible chat-completions API for the benchmarks: every answer is a valid analysis,
sent after LATENCY seconds, many at a time. Usage: python3 fake_llm.py PORT LATENCY"""
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LATENCY = float(sys.argv[2])
ANSWER = json.dumps({"summary": "s", "root_cause": "c", "confidence": 0.5, "category": "unknown",
                     "impact": "i", "evidence": [], "remediation": ["r"], "next_queries": []})


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        time.sleep(LATENCY)
        body = json.dumps({"id": "x", "object": "chat.completion", "created": 1, "model": "bench",
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER},
                                        "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": 1000, "completion_tokens": 100,
                                     "total_tokens": 1100}}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
