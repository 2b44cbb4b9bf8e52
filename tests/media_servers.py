"""The real media servers in the tests: Debian's ``janus`` and ``turnserver``.

``run_janus(folder, event_url=…, event_secret=…)`` writes a configuration folder
with only what the Janus media backend uses (the VideoRoom plugin, the HTTP
transport, the sample HTTP event handler posting to ``event_url`` with Basic
auth), links just those three modules into folders of their own, starts the
binary in the foreground on free 127.0.0.1 ports and stops it at the end.

``run_turnserver(folder, secret)`` starts coturn on 127.0.0.1 with
``use-auth-secret`` and ``secret`` (the server's ``SIGNALING_TURN_SECRET``), no
TLS/DTLS, no CLI, relaying on loopback, its database and log in ``folder``.

Without a binary the caller's test fails and names the Debian package to
install (``.ci/ensure-media-servers``): it is never skipped.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import free_port, stop_process

JANUS = Path("/usr/bin/janus")
TURNSERVER = Path("/usr/bin/turnserver")
#: Where Debian's janus package keeps its modules.
JANUS_LIB = Path("/usr/lib/x86_64-linux-gnu/janus")
#: The modules the backend needs, by folder: nothing else is loaded.
JANUS_MODULES = {
    "plugins": "libjanus_videoroom.so",
    "transports": "libjanus_http.so",
    "events": "libjanus_sampleevh.so",
}
#: The user name the event handler sends with the secret (Basic auth).
EVENT_USER = "janus"
REALM = "giftcall.test"
START_TIMEOUT_S = 15.0


def require_binary(path: Path, package: str) -> None:
    """Fail (never skip) without a media server's binary."""
    if not path.exists():
        pytest.fail(
            f"{path} is missing: the media-server tests need Debian's {package} package "
            f"(run .ci/ensure-media-servers, or apt-get install -y {package})",
            pytrace=False,
        )


@dataclass
class RunningProcess:
    """A started server: its process, folder and log."""

    process: subprocess.Popen[bytes]
    folder: Path
    log: Path

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def alive(self) -> bool:
        return self.process.poll() is None


@dataclass
class RunningJanus(RunningProcess):
    port: int
    admin_key: str

    @property
    def url(self) -> str:
        """The Janus HTTP API (what ``SIGNALING_JANUS_URL`` names)."""
        return f"http://127.0.0.1:{self.port}/janus"

    def stop(self) -> None:
        # Janus waits for idle keep-alive connections when it stops: no need to here.
        stop_process(self.process, grace_s=1)


@dataclass
class RunningTurn(RunningProcess):
    port: int
    secret: str

    @property
    def url(self) -> str:
        """The ICE server URL (UDP) for ``SIGNALING_ICE_SERVERS``."""
        return f"turn:127.0.0.1:{self.port}?transport=udp"


def _start(command: list[str], folder: Path) -> tuple[subprocess.Popen[bytes], Path]:
    log = folder / "server.log"
    with log.open("wb") as sink:
        # stdout to a file: a pipe nobody reads would block the server.
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT, cwd=folder
        )
    return proc, log


def _wait_until(
    ready: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path, what: str
) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-4000:]
            raise AssertionError(f"{what} exited with {proc.returncode}:\n{tail}")
        if ready():
            return
        time.sleep(0.05)
    stop_process(proc, grace_s=2)
    raise AssertionError(f"{what} did not come up:\n{log.read_text(errors='replace')[-4000:]}")


def _tcp_listens(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


def _http_answers(url: str) -> bool:
    with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=0.5) as response:
        return bool(response.status == 200)
    return False


# ----------------------------------------------------------------- janus


def janus_config(
    folder: Path, *, port: int, event_url: str, event_secret: str, admin_key: str
) -> None:
    """Write ``janus.jcfg`` and the three module configurations into ``folder``,
    and link only the needed modules into ``folder/<kind>``."""
    for kind, module in JANUS_MODULES.items():
        (folder / kind).mkdir(parents=True, exist_ok=True)
        link = folder / kind / module
        if not link.exists():
            link.symlink_to(JANUS_LIB / kind / module)
    (folder / "loggers").mkdir(exist_ok=True)
    (folder / "janus.jcfg").write_text(f"""\
general: {{
    configs_folder = "{folder}"
    plugins_folder = "{folder}/plugins"
    transports_folder = "{folder}/transports"
    events_folder = "{folder}/events"
    loggers_folder = "{folder}/loggers"
    debug_level = 4
    debug_timestamps = true
    # no admin API: nothing else listens
    session_timeout = 60
}}
media: {{
}}
nat: {{
    # stay on this machine: only loopback candidates
    ice_enforce_list = "127.0.0.1"
    ignore_mdns = true
}}
plugins: {{
}}
transports: {{
}}
events: {{
    broadcast = true
}}
""")
    (folder / "janus.transport.http.jcfg").write_text(f"""\
general: {{
    json = "compact"
    base_path = "/janus"
    http = true
    port = {port}
    ip = "127.0.0.1"
    https = false
}}
admin: {{
    admin_http = false
}}
cors: {{
}}
""")
    (folder / "janus.plugin.videoroom.jcfg").write_text(f"""\
general: {{
    admin_key = "{admin_key}"
}}
""")
    (folder / "janus.eventhandler.sampleevh.jcfg").write_text(f"""\
general: {{
    enabled = true
    events = "handles,webrtc,plugins"
    grouping = true
    json = "compact"
    backend = "{event_url}"
    backend_user = "{EVENT_USER}"
    backend_pwd = "{event_secret}"
    max_retransmissions = 5
    retransmissions_backoff = 100
}}
""")


@contextlib.contextmanager
def run_janus(
    folder: Path,
    *,
    event_url: str,
    event_secret: str,
    admin_key: str = "janus-admin-key",
    port: int | None = None,
) -> Iterator[RunningJanus]:
    """Start Janus with a configuration of its own in ``folder`` (its API on
    ``port``, a free one unless given); stop it at the end."""
    require_binary(JANUS, "janus")
    folder.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    janus_config(
        folder, port=port, event_url=event_url, event_secret=event_secret, admin_key=admin_key
    )
    proc, log = _start([str(JANUS), "--configs-folder", str(folder), "--disable-colors"], folder)
    running = RunningJanus(proc, folder, log, port, admin_key)
    try:
        _wait_until(lambda: _http_answers(running.url + "/info"), proc, log, "janus")
        yield running
    finally:
        running.stop()


def janus_settings(janus: RunningJanus, event_secret: str) -> dict[str, Any]:
    """The server's settings for ``SIGNALING_MEDIA=janus`` with this Janus."""
    return {
        "media": "janus",
        "janus_url": janus.url,
        "janus_admin_key": janus.admin_key,
        "janus_event_secret": event_secret,
    }


# ------------------------------------------------------------------ coturn


def turn_config(folder: Path, *, port: int, secret: str, relay_ports: tuple[int, int]) -> Path:
    config = folder / "turnserver.conf"
    config.write_text(f"""\
listening-ip=127.0.0.1
relay-ip=127.0.0.1
listening-port={port}
min-port={relay_ports[0]}
max-port={relay_ports[1]}
use-auth-secret
static-auth-secret={secret}
realm={REALM}
fingerprint
no-tls
no-dtls
no-cli
no-multicast-peers
# the peers of these tests are on this machine
allow-loopback-peers
userdb={folder / "turndb"}
pidfile={folder / "turnserver.pid"}
log-file=stdout
simple-log
verbose
""")
    return config


def _relay_ports() -> tuple[int, int]:
    """A block of 200 relay ports, away from the kernel's ephemeral range when
    possible, picked by this process's id to keep parallel runs apart."""
    start = 20000 + (os.getpid() * 211) % 9000
    return start, start + 199


@contextlib.contextmanager
def run_turnserver(folder: Path, secret: str) -> Iterator[RunningTurn]:
    """Start coturn on a free 127.0.0.1 port with ``use-auth-secret``."""
    require_binary(TURNSERVER, "coturn")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = turn_config(folder, port=port, secret=secret, relay_ports=_relay_ports())
    proc, log = _start([str(TURNSERVER), "-c", str(config)], folder)
    running = RunningTurn(proc, folder, log, port, secret)
    try:
        _wait_until(lambda: _tcp_listens(port), proc, log, "turnserver")
        yield running
    finally:
        stop_process(proc, grace_s=5)
