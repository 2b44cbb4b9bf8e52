"""Operations: health, metrics, the dev login, and the command line."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import jwt
import pytest
from prometheus_client.parser import text_string_to_metric_families

from signaling.auth import mint_token
from signaling.keys import STORES
from tests.functional.conftest import Lab, PeerFactory, assert_error, both_in
from tests.support import REPO, SECRET, RunningServer, free_port

CLI_TIMEOUT_S = 20.0
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def clean_env(**variables: str) -> dict[str, str]:
    """The test's environment without any SIGNALING_* variable, plus ``variables``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNALING_")}
    env.update(variables)
    return env


async def run_cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "signaling",
        *args,
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), CLI_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def scrape(server: RunningServer) -> Samples:
    status, text = await server.request("GET", "/metrics")
    assert status == 200 and isinstance(text, str), text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    assert key in samples, (name, labels, sorted(n for n, _ in samples))
    return samples[key]


async def test_health_answers_without_a_token(server: RunningServer) -> None:
    assert await server.request("GET", "/api/health") == (200, {"ok": True})


async def test_metrics_describe_connections_calls_signals_and_timers(
    server: RunningServer, peer: PeerFactory
) -> None:
    call = await server.schedule("alice", "bob")
    alice, bob = await peer("alice"), await peer("bob")
    await both_in(alice, bob, call["id"])
    for signal in (
        {"call_id": call["id"], "type": "offer", "sdp": "v=0"},
        {"call_id": call["id"], "type": "candidate", "candidate": {"candidate": "c"}},
        {"call_id": call["id"], "type": "candidate", "candidate": {"candidate": "d"}},
    ):
        assert await bob.emit("signal", signal) == {"ok": True}
    await alice.wait_for("signal", 3)
    await alice.ok("connected", call["id"])
    await bob.ok("connected", call["id"])
    await alice.take("live")
    during = await scrape(server)
    assert sample(during, "signaling_calls", state="live") == 1
    await alice.take("ended")

    after = await scrape(server)
    assert sample(after, "signaling_connections", namespace="/call") == 2
    assert sample(after, "signaling_calls", state="ended") == 1
    for state in ("scheduled", "open", "waiting", "connecting", "countdown", "live"):
        assert sample(after, "signaling_calls", state=state) == 0
    assert sample(after, "signaling_signals_relayed_total", type="offer") == 1
    assert sample(after, "signaling_signals_relayed_total", type="candidate") == 2
    assert sample(after, "signaling_signals_relayed_total", type="answer") == 0
    for kind in ("live", "ended"):
        assert sample(after, "signaling_timer_lateness_seconds_count", kind=kind) == 1
        late = sample(after, "signaling_timer_lateness_seconds_sum", kind=kind)
        assert 0 <= late < 0.5


async def test_the_connection_gauge_follows_disconnections(
    server: RunningServer, peer: PeerFactory
) -> None:
    alice, _bob = await peer("alice"), await peer("bob")
    assert sample(await scrape(server), "signaling_connections", namespace="/call") == 2
    await alice.close()
    for _ in range(100):  # the server notices the close shortly after
        value = sample(await scrape(server), "signaling_connections", namespace="/call")
        if value == 1:
            break
        await asyncio.sleep(0.02)
    assert value == 1


async def test_the_dev_login_is_absent_unless_dev_mode_is_on(server: RunningServer) -> None:
    status, body = await server.request("POST", "/api/dev/login", json={"user_id": "alice"})
    assert status == 404
    assert_error(body, "not_found")


async def test_the_dev_login_gives_a_working_token(lab: Lab) -> None:
    server = await lab.start(dev=True)
    status, body = await server.request("POST", "/api/dev/login", json={"user_id": "alice"})
    assert status == 200, body
    assert body["ok"] is True and body["user_id"] == "alice"
    token = body["token"]
    headers = {"Authorization": f"Bearer {token}"}
    status, listed = await server.request("GET", "/api/calls", headers=headers)
    assert status == 200, listed
    demo = [c for c in listed["calls"] if {c["caller_id"], c["callee_id"]} == {"alice", "bob"}]
    assert demo, listed  # dev mode's demo call between alice and bob
    client = await lab.connect(server, "alice", token=token)
    assert (await client.join(demo[0]["id"]))["role"] == "waiting"
    for bad in ({}, {"user_id": ""}, {"user_id": 7}, {"user_id": "x" * 65}):
        status, answer = await server.request("POST", "/api/dev/login", json=bad)
        assert status == 400, (bad, answer)
        assert_error(answer, "invalid")


async def test_the_token_command_mints_a_token_the_server_accepts(lab: Lab) -> None:
    server = await lab.start()
    code, out, err = await run_cli("token", "alice", "--secret", SECRET, env=clean_env())
    assert code == 0, err
    token = out.strip()
    assert "\n" not in token
    assert jwt.decode(token, SECRET, algorithms=["HS256"])["sub"] == "alice"
    status, body = await server.request(
        "GET", "/api/calls", headers={"Authorization": f"Bearer {token}"}
    )
    assert (status, body) == (200, {"ok": True, "calls": [], "next_before": None})
    call = await server.schedule("alice", "bob")
    bob = await lab.connect(server, "bob")
    alice = await lab.connect(server, "alice", token=token)
    await both_in(bob, alice, call["id"])


async def test_the_token_command_reads_the_secret_from_the_environment() -> None:
    (code, out, err), (no_code, no_out, no_err) = await asyncio.gather(
        run_cli("token", "bob", "--ttl", "60", env=clean_env(SIGNALING_JWT_SECRET=SECRET)),
        run_cli("token", "bob", env=clean_env()),
    )
    assert code == 0, err
    claims = jwt.decode(out.strip(), SECRET, algorithms=["HS256"])
    assert claims["sub"] == "bob" and claims["exp"] - claims["iat"] == 60
    assert no_code == 2 and no_out == ""
    assert "SIGNALING_JWT_SECRET" in no_err


async def test_serve_refuses_to_start_without_a_secret(tmp_path: Path) -> None:
    def env(**dev: str) -> dict[str, str]:
        return clean_env(
            SIGNALING_PORT=str(free_port()),
            SIGNALING_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}",
            **dev,
        )

    # Dev mode unset, and dev mode explicitly off.
    runs = await asyncio.gather(
        run_cli("serve", env=env()), run_cli("serve", env=env(SIGNALING_DEV="0"))
    )
    for code, _out, err in runs:
        assert code == 2, err
        assert "SIGNALING_JWT_SECRET" in err
    assert not (tmp_path / "db.sqlite3").exists()


async def test_serve_refuses_a_secret_under_32_bytes(tmp_path: Path) -> None:
    """F11: ``SIGNALING_JWT_SECRET=a`` no longer starts a server."""
    code, _out, err = await run_cli(
        "serve",
        env=clean_env(
            SIGNALING_PORT=str(free_port()),
            SIGNALING_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}",
            SIGNALING_JWT_SECRET="a",
        ),
    )
    assert code == 2, err
    assert "SIGNALING_JWT_SECRET must be at least 32 bytes" in err
    assert not (tmp_path / "db.sqlite3").exists()


@contextlib.asynccontextmanager
async def serve_dev(tmp_path: Path, port: int) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "signaling",
        "serve",
        "--dev",
        cwd=REPO,
        env=clean_env(
            SIGNALING_PORT=str(port),
            SIGNALING_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'dev.sqlite3'}",
        ),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.communicate(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def read_secret(proc: asyncio.subprocess.Process) -> str:
    assert proc.stderr is not None
    marker = "SIGNALING_JWT_SECRET="
    async with asyncio.timeout(CLI_TIMEOUT_S):
        while line := (await proc.stderr.readline()).decode():
            if marker in line:
                return line.split(marker, 1)[1].strip()
    raise AssertionError(f"the dev server exited ({proc.returncode}) without printing a secret")


async def wait_until_healthy(url: str) -> None:
    async with asyncio.timeout(CLI_TIMEOUT_S), aiohttp.ClientSession() as session:
        while True:
            with contextlib.suppress(aiohttp.ClientConnectionError):
                async with session.get(url + "/api/health") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.05)


async def test_serve_in_dev_mode_prints_the_secret_it_generated(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    async with serve_dev(tmp_path, port) as proc:
        secret = await read_secret(proc)
        assert len(secret) >= 32 and secret != SECRET
        await wait_until_healthy(url)
        async with aiohttp.ClientSession() as session:
            for signer, expected in ((secret, 200), (SECRET, 401)):
                headers = {"Authorization": f"Bearer {mint_token(signer, 'alice')}"}
                async with session.get(url + "/api/calls", headers=headers) as response:
                    assert response.status == expected, await response.text()


async def test_rest_503s_are_counted(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """F16: a failure inside the server answers 503 ``unavailable`` and counts
    in ``signaling_errors_total`` like every other error answer."""
    assert server.app is not None

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the store is down")

    monkeypatch.setattr(server.app[STORES].gifts, "list_for_user", broken)
    before = (await scrape(server)).get(
        ("signaling_errors_total", frozenset({("code", "unavailable")})), 0.0
    )
    for _ in range(2):
        status, body = await server.request("GET", "/api/gifts", "alice")
        assert status == 503, body
        assert body["error"]["code"] == "unavailable"
    after = sample(await scrape(server), "signaling_errors_total", code="unavailable")
    assert after == before + 2


async def test_metrics_behind_a_token_when_one_is_set(lab: Lab) -> None:
    server = await lab.start(metrics_token="scrape-me-0123456789")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "scrape-me"}):
        status, body = await server.request("GET", "/metrics", headers=headers)
        assert status == 401, body
        assert body["error"]["code"] == "unauthorized"
    status, text = await server.request(
        "GET", "/metrics", headers={"Authorization": "Bearer scrape-me-0123456789"}
    )
    assert status == 200 and "signaling_connections" in text
    # A user's token is not the metrics token.
    status, _ = await server.request("GET", "/metrics", "alice")
    assert status == 401
