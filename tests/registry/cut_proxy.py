#!/usr/bin/env python3
"""An HTTP proxy in front of the test registry that misbehaves on purpose.

usage: cut_proxy.py PORT UPSTREAM_PORT LOG [--cut-after N] [--range honest|ignore|shift]
                    [--manifest-503 K] [--manifest-429 K] [--manifest-content-type T]

--cut-after N: the first GET of every blob sends the full headers and N body
  bytes, then drops the connection (RST).
--range: what a resumed request (one with a Range header) gets: honest passes
  it on (206); ignore drops the header (the registry answers 200 with the whole
  blob); shift asks the registry for 1000 bytes earlier (206 with a
  Content-Range that does not match the request).
--manifest-503 K / --manifest-429 K: the first K manifest GETs get 503 / 429
  with Retry-After: 1.
--redirect-blobs PORT2: blob GETs get a 307 to http://127.0.0.1:PORT2/same/path
  (another origin: a client must not send its Authorization there).
--upstream-auth U:P: requests go upstream with Basic U:P, whatever the client sent.
--delay-blobs S: every blob GET waits S seconds before it is forwarded.
--manifest-content-type T: manifests are served with Content-Type T.
--deny-repo NAME: every request for repository NAME gets 403 with a DENIED
  error body, as Docker Hub and Harbor answer a token without pull rights.
--stall-after N: every blob GET sends its headers and N body bytes, then
  nothing more while keeping the connection open.
--trickle BPS / --trickle-manifest BPS: blob / manifest GET bodies are sent
  at BPS bytes per second (one write per byte group each second).
--short-length K: blob GETs declare a Content-Length K bytes short of the
  body they send in full (the surplus is left on the connection).
Logs one line per request: "METHOD PATH range=<Range or -> auth=<yes|no> -> STATUS [cut]".
"""
import base64, http.client, socket, struct, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, upstream, log_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
opts = sys.argv[4:]
def opt(name, default=None):
    return opts[opts.index(name) + 1] if name in opts else default
cut_after = int(opt("--cut-after", "-1"))
range_mode = opt("--range", "honest")
manifest_type = opt("--manifest-content-type")
delay_blobs = float(opt("--delay-blobs", "0"))
redirect_port = opt("--redirect-blobs")
upstream_auth = opt("--upstream-auth")
deny_repo = opt("--deny-repo")
stall_after = int(opt("--stall-after", "-1"))
trickle = int(opt("--trickle", "0"))
trickle_manifest = int(opt("--trickle-manifest", "0"))
short_length = int(opt("--short-length", "0"))
fail_counts = {"503": int(opt("--manifest-503", "0")), "429": int(opt("--manifest-429", "0"))}
lock = threading.Lock()
seen_blobs = set()
HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
       "proxy-authorization", "proxy-authenticate"}


def log(line):
    with lock, open(log_path, "a") as f:
        f.write(line + "\n")


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def handle_any(self):
        rng = self.headers.get("Range")
        auth = "yes" if self.headers.get("Authorization") else "no"
        is_blob = "/blobs/" in self.path and self.command == "GET"
        is_manifest = "/manifests/" in self.path
        if deny_repo and self.path.startswith("/v2/" + deny_repo + "/"):
            log("%s %s range=%s auth=%s -> 403 denied" % (self.command, self.path, rng or "-", auth))
            body = b'{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}'
            self.send_response(403)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            return
        if is_manifest:
            for code in ("503", "429"):
                with lock:
                    inject = fail_counts[code] > 0
                    if inject:
                        fail_counts[code] -= 1
                if inject:
                    log("%s %s range=%s auth=%s -> %s injected" % (self.command, self.path, rng or "-", auth, code))
                    self.send_response(int(code))
                    self.send_header("Retry-After", "1")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP and k.lower() != "host"}
        if is_blob and redirect_port:
            log("%s %s range=%s auth=%s -> 307 redirect" % (self.command, self.path, rng or "-", auth))
            self.send_response(307)
            self.send_header("Location", "http://127.0.0.1:%s%s" % (redirect_port, self.path))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if upstream_auth:
            headers["Authorization"] = "Basic " + base64.b64encode(upstream_auth.encode()).decode()
        if is_blob and delay_blobs > 0:
            time.sleep(delay_blobs)
        if rng and is_blob:
            if range_mode == "ignore":
                headers.pop("Range", None)
            elif range_mode == "shift":
                start = int(rng.split("=")[1].split("-")[0])
                headers["Range"] = "bytes=%d-" % max(0, start - 1000)
        conn = http.client.HTTPConnection("127.0.0.1", upstream, timeout=60)
        conn.request(self.command, self.path, headers=headers)
        resp = conn.getresponse()
        cut = False
        with lock:
            if is_blob and cut_after >= 0 and resp.status == 200 and self.path not in seen_blobs:
                seen_blobs.add(self.path)
                cut = True
        log("%s %s range=%s auth=%s -> %d%s" % (self.command, self.path, rng or "-", auth, resp.status,
                                                " cut" if cut else ""))
        self.send_response(resp.status)
        body_len = None
        for k, v in resp.getheaders():
            if k.lower() in HOP:
                continue
            if k.lower() == "content-length":
                body_len = int(v)
                if is_blob and short_length and self.command == "GET" and resp.status in (200, 206):
                    v = str(max(0, body_len - short_length))
            if k.lower() == "content-type" and is_manifest and manifest_type:
                v = manifest_type
            self.send_header(k, v)
        if body_len is None and self.command != "HEAD":
            data = resp.read()
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            conn.close()
            return
        self.end_headers()
        rate = trickle if is_blob else trickle_manifest if is_manifest and self.command == "GET" else 0
        if self.command != "HEAD" and (rate > 0 or (is_blob and stall_after >= 0)):
            data = resp.read()
            conn.close()
            if is_blob and stall_after >= 0:
                self.wfile.write(data[:stall_after])
                self.wfile.flush()
                time.sleep(3600)
                return
            for i in range(0, len(data), rate):
                self.wfile.write(data[i:i + rate])
                self.wfile.flush()
                time.sleep(1)
            return
        sent = 0
        while self.command != "HEAD":
            chunk = resp.read(65536)
            if not chunk:
                break
            if cut and sent + len(chunk) > cut_after:
                self.wfile.write(chunk[: cut_after - sent])
                self.wfile.flush()
                # RST instead of FIN: a connection reset mid-layer.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True
                conn.close()
                return
            self.wfile.write(chunk)
            sent += len(chunk)
        conn.close()

    do_GET = handle_any
    do_HEAD = handle_any


ThreadingHTTPServer(("127.0.0.1", port), Proxy).serve_forever()
