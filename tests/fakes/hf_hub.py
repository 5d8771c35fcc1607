"""A stand-in for the Hugging Face hub's download endpoints, on loopback (``HF_ENDPOINT`` points here).

It answers what ``huggingface_hub`` asks when it fetches one file: ``HEAD`` and ``GET``
``/{repo}/resolve/{revision}/{file}`` (with ``ETag``, ``X-Repo-Commit`` and ranges, as the
hub does) and ``GET /api/models/{repo}/tree/{revision}`` (the file list a quantisation tag is
looked up in); a missing repo or file gets the hub's ``X-Error-Code``. A download can be cut
after ``cut_after`` bytes, to prove that no partial file is left looking complete.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_TREE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/?]+)")


@dataclass
class FakeHub:
    repos: dict[str, dict[str, bytes]] = field(default_factory=dict)
    cut_after: int | None = None  # while set, every GET of a file stops after this many bytes
    downloads: list[str] = field(default_factory=list)  # the files whose bodies were sent
    url: str = ""

    def serve(self) -> ThreadingHTTPServer:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                return

            def do_HEAD(self) -> None:
                self._resolve(body=False)

            def do_GET(self) -> None:
                if self.path.startswith("/api/"):
                    self._tree()
                else:
                    self._resolve(body=True)

            def _error(self, status: int, code: str) -> None:
                self.send_response(status)
                self.send_header("X-Error-Code", code)
                self.send_header("Content-Type", "application/json")
                payload = json.dumps({"error": code}).encode()
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            def _tree(self) -> None:
                match = _TREE.match(self.path)
                files = hub.repos.get(match["repo"]) if match else None
                if files is None:
                    self._error(404, "RepoNotFound")
                    return
                entries = [
                    {"type": "file", "path": path, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                    for path, data in files.items()
                ]
                payload = json.dumps(entries).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _resolve(self, body: bool) -> None:
                match = _RESOLVE.match(self.path.split("?")[0])
                files = hub.repos.get(match["repo"]) if match else None
                if match is None or files is None:
                    self._error(401, "RepoNotFound")  # the hub answers 401 for a repo it will not show
                    return
                data = files.get(match["path"])
                if data is None:
                    self._error(404, "EntryNotFound")
                    return
                start = 0
                ranged = re.match(r"bytes=(\d+)-", self.headers.get("Range", ""))
                if ranged:
                    start = int(ranged.group(1))
                self.send_response(206 if ranged else 200)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                if not body:
                    return
                hub.downloads.append(match["path"])
                chunk = data[start:]
                if hub.cut_after is not None:
                    chunk = chunk[: hub.cut_after]
                    self.wfile.write(chunk)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(chunk)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, name="fake-hf-hub", daemon=True).start()
        return server
