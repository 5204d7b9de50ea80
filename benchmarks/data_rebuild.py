"""The network source of `slm data pull`, checked against the real upstream files.

Serves the upstream repositories' files from local git snapshots (one bare or normal clone
per repository, named OWNER+NAME, e.g. the folders `fetch` leaves under /work/.mirror) on a
loopback port laid out like raw.githubusercontent.com (REPO/COMMIT/PATH), points
SLMKIT_DATA_BASE_URL at it, and runs `slm data pull` for every dataset with a network source
into a fresh store. A pull only succeeds if the upstream bytes match their own pins AND the
converted files match the catalog's pins, so "installed" here means the converter rebuilds
the stored data byte for byte from upstream. Prints one line per dataset with its time.

    python benchmarks/data_rebuild.py --mirrors /work/.mirror
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from slmkit.catalog.data_convert import CONVERTERS
from slmkit.catalog.datasets import DATASETS


def git_dir(mirrors: Path, repo: str) -> Path | None:
    base = mirrors / repo.replace("/", "+")
    for cand in (base / "repo", base):
        if (cand / "HEAD").is_file() or (cand / ".git").exists():
            return cand
    return None


def serve(mirrors: Path) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            owner, name, commit, path = self.path.lstrip("/").split("/", 3)
            where = git_dir(mirrors, f"{owner}/{name}")
            show = ["git", "-C", str(where), "show", f"{commit}:{path}"] if where else []
            done = subprocess.run(show, capture_output=True) if show else None
            if done is None or done.returncode != 0:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(done.stdout)))
            self.end_headers()
            self.wfile.write(done.stdout)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mirrors", type=Path, required=True)
    args = ap.parse_args()
    server = serve(args.mirrors)
    home = Path(tempfile.mkdtemp(prefix="slmkit-data-rebuild-"))
    env = {k: v for k, v in os.environ.items() if k != "SLMKIT_DATA_DIR"}
    env.update(SLMKIT_HOME=str(home), SLMKIT_DATA_BASE_URL=f"http://127.0.0.1:{server.server_port}")
    failed = 0
    for d in DATASETS:
        if d.name not in CONVERTERS and not d.verbatim:
            print(f"{d.name:<14} no network source (local copy only)")
            continue
        if git_dir(args.mirrors, d.upstream[0].repo) is None:
            print(f"{d.name:<14} skipped: no snapshot of {d.upstream[0].repo} under {args.mirrors}")
            continue
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "slmkit", "data", "pull", d.name]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        took = time.perf_counter() - t0
        verdict = "rebuilt byte for byte" if done.returncode == 0 else done.stderr.strip()
        failed += done.returncode != 0
        print(f"{d.name:<14} {verdict} ({took:.1f} s, from {d.upstream[0].repo})")
    server.shutdown()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
