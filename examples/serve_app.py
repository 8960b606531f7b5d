"""A small web app that serves ``name@prod`` and switches versions when the alias moves.

It registers two versions, serves predictions over HTTP from a watch handle, moves the alias,
and shows the app answering from the new version without a restart. Stops by itself.
"""

import json
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import registry_sdk as rs


class Constant:
    def __init__(self, value):
        self.value = value

    def predict(self, X):
        return [self.value for _ in X]


def register(value):
    @rs.register("constant", alias="prod")
    def build(value: float = value):
        return Constant(value)

    build()
    return build.last_version


register(1.0)
handle = rs.watch("constant@prod", interval=0.5)


class Predict(BaseHTTPRequestHandler):
    def do_POST(self):
        rows = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["inputs"]
        body = json.dumps({"version": handle.version, "predictions": handle.predict(rows)})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Predict)
threading.Thread(target=server.serve_forever, daemon=True).start()
url = f"http://127.0.0.1:{server.server_port}/"


def ask():
    request = urllib.request.Request(url, data=json.dumps({"inputs": [[0], [1]]}).encode())
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


print("before:", ask())
second = register(2.0)  # moves constant@prod to the new version
deadline = time.monotonic() + 60
while handle.version != second.version and time.monotonic() < deadline:
    time.sleep(0.2)
print("after: ", ask())
handle.close()
server.shutdown()
