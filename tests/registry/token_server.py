#!/usr/bin/env python3
"""A small Docker token service for the registry tests (distribution's token
auth spec). Issues RS256 JWTs signed with the test's key (openssl does the
signing), with the signing certificate in the x5c header so that the registry
checks them against its rootcertbundle. Logs one line per request:
"token user=<name|-> scope=<scope> service=<service> status=<code>".

usage: token_server.py PORT KEY CERT ISSUER SERVICE LOG [--user U:P] [--anonymous]
                       [--expires N] [--expired-first K]
  --anonymous: requests without credentials get pull access to public/* only.
  --expires N: the expires_in the answers announce (the JWT itself lives 300 s).
  --expired-first K: the first K tokens are already expired (exp in the past,
    beyond the registry's 60 s leeway) while announcing expires_in 300.
"""
import base64, json, os, subprocess, sys, threading, time, urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

args = sys.argv[1:]
port, key, cert, issuer, service, log_path = args[:6]
opts = args[6:]
users = {}
anonymous = "--anonymous" in opts
expires = 300
jwt_lifetime = 300
expired_first = 0
for i, o in enumerate(opts):
    if o == "--user":
        u, p = opts[i + 1].split(":", 1)
        users[u] = p
    if o == "--expires":
        expires = int(opts[i + 1])
    if o == "--expired-first":
        expired_first = int(opts[i + 1])

der = subprocess.run(["openssl", "x509", "-in", cert, "-outform", "DER"],
                     check=True, capture_output=True).stdout
x5c = base64.b64encode(der).decode()
log_lock = threading.Lock()


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def sign(claims):
    header = {"alg": "RS256", "typ": "JWT", "x5c": [x5c]}
    signing_input = (b64url(json.dumps(header).encode()) + "." +
                     b64url(json.dumps(claims).encode())).encode()
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=signing_input,
                         check=True, capture_output=True).stdout
    return signing_input.decode() + "." + b64url(sig)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        q = urllib.parse.parse_qs(url.query)
        user = None
        status = 200
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                u, p = base64.b64decode(auth[6:]).decode().split(":", 1)
            except Exception:
                u, p = "", None
            if users.get(u) != p:
                status = 401
            user = u
        elif not anonymous:
            status = 401
        scopes = q.get("scope", [])
        with log_lock, open(log_path, "a") as f:
            f.write("token user=%s scope=%s service=%s status=%d\n" %
                    (user or "-", ",".join(scopes) or "-", ",".join(q.get("service", [])), status))
        if url.path != "/token" or q.get("service", [""])[0] != service:
            return self.reply(400, {"errors": [{"code": "BAD_REQUEST"}]})
        if status != 200:
            return self.reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]})
        access = []
        for s in scopes:
            parts = s.split(":")
            if user is None and not ":".join(parts[1:-1]).startswith("public/"):
                continue
            if len(parts) >= 3 and parts[0] == "repository":
                access.append({"type": "repository", "name": ":".join(parts[1:-1]),
                               "actions": parts[-1].split(",")})
        global expired_first
        now = int(time.time())
        exp = now + jwt_lifetime
        with log_lock:
            if expired_first > 0:
                expired_first -= 1
                exp = now - 200
        claims = {"iss": issuer, "sub": user or "", "aud": service, "exp": exp,
                  "nbf": now - 5, "iat": now, "jti": base64.b16encode(os.urandom(8)).decode(),
                  "access": access}
        self.reply(200, {"token": sign(claims), "expires_in": expires,
                         "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))})


ThreadingHTTPServer((os.environ.get("TOKEN_BIND", "127.0.0.1"), int(port)), Handler).serve_forever()
