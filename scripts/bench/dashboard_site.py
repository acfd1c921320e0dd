"""A demo-like dashboard on loopback, for the dashboard benchmarks and the screenshot script.

The real Pi api daemon (``edgepair pi run api``) serves the repository's ``frontend-dist``
with the fixture files of ``tests/fixtures/dashboard`` in its public directory, moved in
time to look fresh; optionally the shipped nginx config runs in front of it. Chromium is
Debian's, driven by Playwright (never ``playwright install``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path

from _common import HOST_ADDRESS, MAC, PI_ADDRESS, ROOT, Children, free_port

from tests.fixtures import dashboard as fixtures

FRONTEND = ROOT / "frontend-dist"
CHROMIUM = "/usr/bin/chromium"
# Headless Chromium that stays on loopback (LIBRARIES.md: without these it calls home).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
NGINX = "/usr/sbin/nginx"
NGINX_TEMPLATE = ROOT / "scripts" / "nginx" / "edgepair.conf"
# nginx gets this long to start listening.
NGINX_START_S = 10.0


class DashboardSite:
    """A Pi config with ``[api] frontend_dir`` and fixture files, in a temporary directory."""

    def __init__(self, *, log_level: str = "WARNING") -> None:
        from handshake.auth import keygen  # noqa: PLC0415 - after _common's sys.path tweak

        self.root = Path(tempfile.mkdtemp(prefix="edgepair-dashboard-"))
        self.log_level = log_level
        self.api_port = free_port()
        self.api = f"http://127.0.0.1:{self.api_port}"
        self.public = self.root / "pi-state" / "public"
        self.log = self.root / "pi.log"
        secrets = self.root / "secrets.toml"
        secrets.write_text(f'handshake_key = "{keygen()}"\n')
        secrets.chmod(0o600)
        self.host_port = free_port()
        self.host = f"http://127.0.0.1:{self.host_port}"
        self.host_log = self.root / "host.log"
        self.host_config = self.root / "host.toml"
        # Host mode: the host agent serves the full dashboard and reads the Pi's files.
        self.host_config.write_text(f"""
[host]
listen = "127.0.0.1:{self.host_port}"
state_dir = "{self.root / 'host-state'}"
secrets_file = "{secrets}"
frontend_dir = "{FRONTEND}"
[pi]
url = "{self.api}"
""")
        self.config = self.root / "pi.toml"
        # The host sleeps: its agent's port is closed. Magic packets go to a unicast
        # loopback port nobody listens on.
        self.config.write_text(f"""
[pi]
address = "{PI_ADDRESS}"
state_dir = "{self.root / 'pi-state'}"
secrets_file = "{secrets}"
[api]
listen = "127.0.0.1:{self.api_port}"
frontend_dir = "{FRONTEND}"
allow_anonymous_wake = true
publish_interval_s = 5
[host]
address = "{HOST_ADDRESS}"
mac = "{MAC}"
url = "http://{HOST_ADDRESS}:{free_port()}"
heartbeat_interval_s = 2
heartbeat_timeout_s = 1
[wol]
target = "127.0.0.1"
port = {free_port(socket.SOCK_DGRAM)}
[dns]
name = "nas.home.arpa"
listen = "127.0.0.1:{free_port(socket.SOCK_DGRAM)}"
[[schedule.wake]]
at = "07:00"
days = "mon-fri"
""")

    def write_fixtures(self) -> None:
        """The other daemons' files, fresh as of now (host.json and pi.json are the api's).

        The host went to sleep when it sent the fixture snapshot: the api daemon restores
        that state (its private state file) instead of starting a fresh "asleep since now".
        """
        from handshake.util import atomic  # noqa: PLC0415 - after _common's sys.path tweak
        from pi.hostloop import STATE_FILE  # noqa: PLC0415
        from pi.state import HostState, HostStatus  # noqa: PLC0415

        fixtures.write(self.public, fixtures.PI_FILES)
        # The Plan view draws today's slots on the day: the energy fixture moved by whole days,
        # compact as the control daemon writes it.
        atomic.write_json(self.public / "energy.json", fixtures.load_today("energy"), compact=True)
        fixtures.write(self.root / "host-state" / "public", fixtures.HOST_FILES)
        snapshot = fixtures.load("snapshot")
        slept = datetime.fromisoformat(snapshot["received_at"].replace("Z", "+00:00"))
        status = HostStatus(state=HostState.OFFLINE, since=slept.timestamp(), reason="suspend")
        atomic.write_json(self.root / "pi-state" / "private" / STATE_FILE, status.to_json(),
                          mode=0o600)

    def start(self, children: Children) -> subprocess.Popen[bytes]:
        self.write_fixtures()
        return children.spawn(["--log-level", self.log_level, "pi", "run", "api",
                               "--config", str(self.config)], self.log)

    def start_host(self, children: Children) -> subprocess.Popen[bytes]:
        """The host agent on ``self.host`` (call after ``start``: the fixtures are written)."""
        return children.spawn(["--log-level", self.log_level, "host", "run",
                               "--config", str(self.host_config)], self.host_log)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class Nginx:
    """The shipped nginx config in front of a site, on its own prefix and a free port."""

    def __init__(self, site: DashboardSite) -> None:
        self.prefix = site.root / "nginx"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        server = NGINX_TEMPLATE.read_text()
        for old, new in [("listen 80;", f"listen 127.0.0.1:{self.port};"),
                         ("listen [::]:80;", ""),
                         ("root /opt/edgepair/frontend-dist;", f"root {FRONTEND};"),
                         ("alias /var/lib/edgepair/public/$1;", f"alias {site.public}/$1;"),
                         ("proxy_pass http://127.0.0.1:8770;",
                          f"proxy_pass http://127.0.0.1:{site.api_port};")]:
            if server.count(old) != 1:
                raise SystemExit(f"{NGINX_TEMPLATE} no longer has {old!r}")
            server = server.replace(old, new)
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.prefix / "tmp" / kind).mkdir(parents=True, exist_ok=True)
        (self.prefix / "edgepair.conf").write_text(server)
        temp = "\n".join(f"  {kind}_temp_path {self.prefix / 'tmp' / kind};"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        user = "user root;" if os.geteuid() == 0 else ""  # workers must read the temp dirs
        self.conf = self.prefix / "nginx.conf"
        self.conf.write_text(f"""
{user}
worker_processes 1;
pid {self.prefix / 'nginx.pid'};
error_log {self.prefix / 'error.log'} warn;
events {{ worker_connections 256; }}
http {{
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  access_log off;
{temp}
  include {self.prefix / 'edgepair.conf'};
}}
""")

    def start(self) -> None:
        self.proc = subprocess.Popen([NGINX, "-p", str(self.prefix), "-c", str(self.conf),
                                      "-e", "stderr", "-g", "daemon off;"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        end = time.monotonic() + NGINX_START_S
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.proc.poll() is not None or time.monotonic() > end:
                log = (self.prefix / "error.log")
                raise SystemExit("nginx did not start: "
                                 + (log.read_text() if log.exists() else "no log"))
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
