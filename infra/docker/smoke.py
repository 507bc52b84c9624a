#!/usr/bin/env python3
"""A client test against a running emulator (the container, or `make dev`).

Connects a WebSocket client, subscribes, publishes through the HTTP API and
checks the event arrives; then queues a webhook delivery to a receiver in
this process and checks it arrives signed. What your own CI would do against
the image. Needs `pip install websockets`.

    JWT_SECRET=... python3 infra/docker/smoke.py [--http http://localhost:3000] [--ws ws://localhost:3001/local]
"""

import argparse
import asyncio
import base64
import hashlib
import hmac
import http.server
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request

import websockets


def token(secret: str, tenant: str, user: str, role: str) -> str:
    """An HS256 JWT with the claims Switchboard reads."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {"sub": user, "tenant_id": tenant, "role": role, "exp": int(time.time()) + 600}
    payload = b64(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


def call(method: str, url: str, bearer: str, body=None):
    """The status and JSON answer; an error status is an answer too (the
    caller's assertion says what was expected), never a traceback."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {bearer}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        text = e.read()
        try:
            return e.code, json.loads(text or b"null")
        except ValueError:
            return e.code, text.decode(errors="replace")


class Receiver(http.server.BaseHTTPRequestHandler):
    got = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.got.append((dict(self.headers), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


async def main(args) -> None:
    secret = os.environ["JWT_SECRET"]
    agent = token(secret, "smoke", "42", "agent")
    service = token(secret, "smoke", "svc", "service")
    admin = token(secret, "smoke", "ops", "admin")

    # The token as @switchboard/client sends it: in the subprotocol list (the identity source by default).
    async with websockets.connect(args.ws, subprotocols=["switchboard", agent]) as ws:
        await ws.send(json.dumps({"action": "subscribe", "events": ["call.*"], "id": "s1"}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert reply["type"] == "subscribed", reply

        status, out = call("POST", f"{args.http}/v1/events", service, {"type": "call.incoming", "data": {"n": 1}})
        assert status == 200 and out["report"]["delivered"] == 1, out
        event = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert event["id"] == out["event_id"] and event["type"] == "call.incoming", event
        print("websocket: published event received", event["id"])

    if args.receiver_host:
        # Listens where the emulator is told to deliver, nowhere else.
        server = http.server.ThreadingHTTPServer((args.receiver_host, 0), Receiver)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://{args.receiver_host}:{server.server_address[1]}/hook"
        status, hook = call("POST", f"{args.http}/v1/webhooks", admin, {"name": "smoke", "url": url, "events": ["queue.*"]})
        assert status == 201, hook
        status, out = call("POST", f"{args.http}/v1/events", service, {"type": "queue.joined", "data": {"queue": "support"}})
        assert status == 200, out
        deadline = time.time() + 15
        while not Receiver.got and time.time() < deadline:
            time.sleep(0.1)
        assert Receiver.got, "no webhook delivery"
        headers, body = Receiver.got[0]
        key = base64.b64decode(hook["secret"].removeprefix("whsec_"))
        lower = {k.lower(): v for k, v in headers.items()}
        signed = f"{lower['webhook-id']}.{lower['webhook-timestamp']}.".encode() + body
        expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        assert expected in lower["webhook-signature"].split(" "), "signature verifies"
        print("webhook: signed delivery received", lower["webhook-id"])
        server.shutdown()
    print("smoke test passed")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--http", default="http://localhost:3000")
    parser.add_argument("--ws", default="ws://localhost:3001/local")
    parser.add_argument(
        "--receiver-host",
        default="127.0.0.1",
        help="how the emulator reaches this process for the webhook check ('' skips it); "
        "from a container, the host's address (e.g. 172.17.0.1)",
    )
    try:
        asyncio.run(main(parser.parse_args()))
    except AssertionError as e:
        print(f"smoke test failed: {e}", file=sys.stderr)
        sys.exit(1)
    except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException) as e:
        print(f"smoke test failed: the emulator did not answer as expected: {e!r}", file=sys.stderr)
        sys.exit(1)
