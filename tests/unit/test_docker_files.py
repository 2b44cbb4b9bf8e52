"""docker/: what can be checked without a Docker engine.

The compose file is parsed with PyYAML and its wiring checked; HAProxy's
configuration is checked by the real ``/usr/sbin/haproxy -c`` and compared
with the rules the load-balancer tests run (``tests/haproxy.py``); the
Dockerfile is read instruction by instruction and compared with the Makefile's
install; docker/.env.example is compared with the variables ``load_settings``
reads; the image's health check script is run against stub servers.
(``docker compose config`` also validates the compose file, where the compose
plugin is installed: docs/deployment.md.)
"""

from __future__ import annotations

import asyncio
import configparser
import re
import runpy
import shlex
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from signaling.config import PREFIX, load_settings
from tests import haproxy
from tests.support import free_port, variables_load_settings_reads

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
#: Extras for developers, never installed in the image; every other extra is.
DEV_EXTRAS = frozenset({"test", "bench"})
BACKENDS = ("mysql", "mongo", "redis")
ENV_LINE = re.compile(r"^([A-Z][A-Z0-9_]*)=(.*)$")


# ------------------------------------------------------------------ helpers


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def services() -> dict[str, dict[str, Any]]:
    found = compose()["services"]
    assert isinstance(found, dict)
    return found


def environment(service: str) -> dict[str, str]:
    """A service's ``environment`` as a mapping (either compose syntax)."""
    env = services()[service].get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def env_example() -> list[tuple[str, str, str]]:
    """``(name, value, comment just above)`` of every assignment in .env.example."""
    entries: list[tuple[str, str, str]] = []
    comment: list[str] = []
    for line in (DOCKER / ".env.example").read_text().splitlines():
        if line.startswith("#"):
            comment.append(line.lstrip("# ").strip())
        elif match := ENV_LINE.match(line):
            entries.append((match[1], match[2], " ".join(comment).strip()))
            comment = []
        else:
            assert not line.strip(), f".env.example: not NAME=value: {line!r}"
            comment = []
    return entries


def variables_the_server_reads() -> set[str]:
    # load_settings asks for every variable by name, on every path.
    names = variables_load_settings_reads()
    assert all(name.startswith(PREFIX) for name in names), names
    assert len(names) >= 20, names  # the recording really saw load_settings' reads
    return names


def dockerfile_instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)``, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in (DOCKER / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, arguments = line.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    assert not pending, "the Dockerfile ends in a continuation line"
    return instructions


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    assert starts, "no FROM"
    return instructions[starts[-1] :]


def pip_installs(commands: list[str], pip: str) -> list[list[str]]:
    """The non-option arguments of every ``<pip> install`` in ``commands``."""
    found: list[list[str]] = []
    for command in commands:
        for part in re.split(r"&&|;", command):
            words = shlex.split(part)
            if len(words) >= 2 and words[0] == pip and words[1] == "install":
                found.append([w for w in words[2:] if not w.startswith("-")])
    return found


def requirement(spec: str) -> tuple[str, frozenset[str]]:
    """``.[a,b]`` -> ``(".", {"a", "b"})``."""
    match = re.fullmatch(r"([^\[\]]+)(?:\[([^\]]*)\])?", spec)
    assert match, spec
    extras = frozenset(e.strip() for e in (match[2] or "").split(",") if e.strip())
    return match[1], extras


def makefile_recipe(target: str) -> list[str]:
    lines = (REPO / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{target}:"))
    recipe: list[str] = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    assert recipe, f"Makefile target {target} has no recipe"
    return recipe


def haproxy_sections(text: str) -> dict[str, list[str]]:
    """``{"defaults": [...], "backend signaling": [...]}``: each section's
    lines, stripped, comments and blank lines dropped."""
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if not raw[0].isspace():
            current = sections.setdefault(line, [])
        else:
            current.append(" ".join(line.split()))
    return sections


def docker_haproxy() -> dict[str, list[str]]:
    return haproxy_sections((DOCKER / "haproxy.cfg").read_text())


def setup_extras() -> set[str]:
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    return set(parser["options.extras_require"])


# ------------------------------------------------------------- compose.yaml


def test_compose_has_every_service_of_the_stack() -> None:
    assert set(services()) >= {
        "haproxy",
        "server",
        "mysql",
        "mongo",
        "redis",
        "coturn",
        "openvidu",
    }


def test_every_published_port_is_bound_to_loopback() -> None:
    published = 0
    for name, service in services().items():
        assert service.get("network_mode") != "host", f"{name} would bypass port bindings"
        for port in service.get("ports", []):
            published += 1
            if isinstance(port, dict):
                assert port.get("host_ip") == "127.0.0.1", (name, port)
            else:
                assert str(port).startswith("127.0.0.1:"), (name, port)
    assert published >= 4  # haproxy, coturn (udp, tcp, relay range), openvidu


def test_the_server_runs_two_replicas_of_the_image() -> None:
    server = services()["server"]
    assert server["deploy"]["replicas"] == 2
    assert server["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
    assert (DOCKER / server["build"]["context"] / server["build"]["dockerfile"]).is_file()
    # Not published: the way in is HAProxy.
    assert "ports" not in server


# ------------------------------------------------------------------ HAProxy


def test_haproxy_is_the_way_in() -> None:
    proxy = services()["haproxy"]
    assert proxy["image"].startswith("haproxy:2."), proxy["image"]
    assert "./haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in proxy["volumes"]
    assert proxy["depends_on"] == {"server": {"condition": "service_healthy"}}
    assert proxy["environment"]["SIGNALING_PORT"] == "${SIGNALING_PORT:-8080}"
    published = [str(port) for port in proxy["ports"]]
    assert "127.0.0.1:8080:8080" in published, published
    frontend = docker_haproxy()["frontend calls"]
    assert "bind :8080" in frontend, frontend
    # Its health check asks the frontend's monitor URI.
    assert "monitor-uri /haproxy/health" in frontend, frontend
    check = " ".join(proxy["healthcheck"]["test"])
    assert "/dev/tcp/127.0.0.1/8080" in check and "GET /haproxy/health" in check, check


def test_haproxy_may_open_the_descriptors_its_maxconn_needs() -> None:
    """HAProxy refuses to start when it cannot raise its descriptor limit to
    about twice ``maxconn`` (a client and a server side per connection)."""
    [maxconn] = [line for line in docker_haproxy()["global"] if line.startswith("maxconn ")]
    nofile = services()["haproxy"]["ulimits"]["nofile"]
    assert min(nofile["soft"], nofile["hard"]) >= 2 * int(maxconn.split()[1]) + 1000, nofile


def test_haproxy_balances_by_call_id_over_every_replica() -> None:
    sections = docker_haproxy()
    backend = sections["backend signaling"]
    assert "balance url_param call_id" in backend
    assert "hash-type consistent" in backend
    assert "http-check send meth GET uri /api/health" in backend
    assert "http-check expect status 200" in backend
    [template] = [line for line in backend if line.startswith("server-template ")]
    _, _, slots, target, *options = template.split()
    assert int(slots) == services()["server"]["deploy"]["replicas"], template
    assert target == '"server:${SIGNALING_PORT}"', template
    assert {"check", "resolvers", "docker"} <= set(options), template
    assert "nameserver dns 127.0.0.11:53" in sections["resolvers docker"]
    defaults = sections["defaults"]
    assert "mode http" in defaults
    assert any(line.startswith("timeout tunnel ") for line in defaults), defaults
    assert any(line.startswith("option redispatch") for line in defaults), defaults
    assert any(line.startswith("retries ") for line in defaults), defaults


def test_haproxy_has_the_rules_the_tests_run() -> None:
    """docker/haproxy.cfg and tests/haproxy.py route the same way (only the
    servers, addresses and timings differ)."""
    tested = haproxy_sections(haproxy.haproxy_config({"one": 1, "two": 2}, 3, 4))

    def rules(section: list[str]) -> set[str]:
        keep = ("balance", "hash-type", "option", "http-check", "mode", "retries")
        return {line for line in section if line.startswith(keep) and "log" not in line}

    docker = docker_haproxy()
    assert rules(docker["backend signaling"]) == rules(tested[f"backend {haproxy.BACKEND}"])
    assert rules(docker["defaults"]) == rules(tested["defaults"])


def test_haproxy_accepts_its_configuration(tmp_path: Path) -> None:
    """The real binary (Debian's, .ci/ensure-haproxy) parses docker/haproxy.cfg."""
    haproxy.require_haproxy()
    result = subprocess.run(
        [str(haproxy.HAPROXY), "-c", "-f", str(DOCKER / "haproxy.cfg")],
        cwd=tmp_path,
        env={"SIGNALING_PORT": "8080", "PATH": "/usr/sbin:/usr/bin:/bin"},
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Configuration file is valid" in result.stdout + result.stderr


def test_the_server_waits_for_healthy_backends() -> None:
    everything = services()
    depends_on = everything["server"]["depends_on"]
    for backend in BACKENDS:
        assert depends_on[backend] == {"condition": "service_healthy"}, backend
        assert everything[backend]["healthcheck"]["test"], backend


def test_every_service_has_a_health_check() -> None:
    for name, service in services().items():
        check = service.get("healthcheck", {})
        assert not check.get("disable"), name
        if name != "server":  # the server's is the image's HEALTHCHECK (below)
            assert check.get("test"), name
    for name, service in services().items():
        for dependency, condition in dict(service.get("depends_on", {})).items():
            assert condition["condition"] in ("service_healthy", "service_started"), name
            assert dependency in services(), (name, dependency)


def test_images_are_the_required_versions() -> None:
    images = {name: service.get("image", "") for name, service in services().items()}
    assert images["mysql"].startswith("mysql:8"), images
    assert images["mongo"].startswith("mongo:7"), images
    assert images["redis"].startswith("redis:7"), images
    assert images["coturn"].startswith("coturn/coturn:"), images
    assert re.match(r"openvidu/openvidu-(dev|server-kms):2\.", images["openvidu"]), images
    assert images["haproxy"].startswith("haproxy:2."), images


def test_the_server_uses_the_stacks_backends() -> None:
    env = environment("server")
    assert "mysql+aiomysql://" in env["SIGNALING_DATABASE_URL"]
    assert "@mysql:3306/" in env["SIGNALING_DATABASE_URL"]
    assert "mongodb://" in env["SIGNALING_MESSAGE_STORE_URL"]
    assert "@mongo:27017/" in env["SIGNALING_MESSAGE_STORE_URL"]
    assert "redis://redis:6379" in env["SIGNALING_REDIS_URL"]
    assert "http://openvidu:4443" in env["SIGNALING_OPENVIDU_URL"]
    assert env["SIGNALING_HOST"] == "${SIGNALING_HOST:-0.0.0.0}"
    assert environment("mysql")["MYSQL_PASSWORD"].startswith("${MYSQL_PASSWORD")
    assert "${MYSQL_PASSWORD" in env["SIGNALING_DATABASE_URL"]
    assert environment("mongo")["MONGO_APP_PASSWORD"].startswith("${MONGO_PASSWORD")
    assert "${MONGO_PASSWORD" in env["SIGNALING_MESSAGE_STORE_URL"]


def test_coturn_and_the_server_share_the_turn_secret() -> None:
    command = services()["coturn"]["command"]
    assert "--use-auth-secret" in command
    assert any(c.startswith("--static-auth-secret=${SIGNALING_TURN_SECRET:?") for c in command)
    assert environment("server")["SIGNALING_TURN_SECRET"].startswith("${SIGNALING_TURN_SECRET:?")


def test_openvidu_sends_its_webhooks_to_the_server_with_the_secret() -> None:
    env = environment("openvidu")
    assert env["OPENVIDU_WEBHOOK"] == "true"
    assert re.fullmatch(
        r"http://server:\$\{SIGNALING_PORT:-8080\}/api/webhooks/openvidu",
        env["OPENVIDU_WEBHOOK_ENDPOINT"],
    ), env
    assert "${SIGNALING_OPENVIDU_WEBHOOK_SECRET:?" in env["OPENVIDU_WEBHOOK_HEADERS"]
    assert env["OPENVIDU_SECRET"].startswith("${SIGNALING_OPENVIDU_SECRET:?")
    server = environment("server")
    assert server["SIGNALING_OPENVIDU_SECRET"].startswith("${SIGNALING_OPENVIDU_SECRET:?")
    assert server["SIGNALING_OPENVIDU_WEBHOOK_SECRET"].startswith(
        "${SIGNALING_OPENVIDU_WEBHOOK_SECRET:?"
    )


def test_the_webhook_header_and_path_are_the_ones_the_server_checks() -> None:
    from signaling.webhooks import openvidu as webhook

    env = environment("openvidu")
    assert env["OPENVIDU_WEBHOOK_ENDPOINT"].endswith(webhook.PATH)
    assert env["OPENVIDU_WEBHOOK_HEADERS"].startswith(f'["{webhook.SECRET_HEADER}: ${{')


def test_bind_mounted_files_exist() -> None:
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if source.startswith("."):
                assert (DOCKER / source).is_file(), (name, volume)


# -------------------------------------------------------------- .env.example


def test_env_example_lists_every_variable_the_server_reads() -> None:
    listed = {name for name, _, _ in env_example()}
    read = variables_the_server_reads()
    assert read - listed == set(), "missing from docker/.env.example"
    stale = {name for name in listed if name.startswith(PREFIX)} - read
    assert stale == set(), "in docker/.env.example but not read by signaling/config.py"


def test_env_example_lists_every_documented_variable() -> None:
    documented = set(
        re.findall(
            r"\bSIGNALING_[A-Z0-9_]*[A-Z0-9]\b", (REPO / "docs/configuration.md").read_text()
        )
    )
    assert documented, "no variable found in docs/configuration.md"
    assert documented - {name for name, _, _ in env_example()} == set()


def test_every_variable_has_a_comment_and_reaches_the_server() -> None:
    entries = env_example()
    assert len({name for name, _, _ in entries}) == len(entries), "a variable is listed twice"
    for name, _, comment in entries:
        assert len(comment) >= 10, f"{name} has no comment above it"
    server_env = environment("server")
    assert set(server_env) == variables_the_server_reads()
    for name, value in server_env.items():
        # Each is taken from docker/.env (with the stack's default, if any).
        assert value.startswith("${" + name), (name, value)


def test_required_secrets_are_empty_in_the_example() -> None:
    """Nobody runs the stack with a secret copied from the repository."""
    values = {name: value for name, value, _ in env_example()}
    text = (DOCKER / "compose.yaml").read_text()
    required = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*):\?", text))
    assert required >= {
        "SIGNALING_JWT_SECRET",
        "SIGNALING_TURN_SECRET",
        "SIGNALING_OPENVIDU_SECRET",
        "SIGNALING_OPENVIDU_WEBHOOK_SECRET",
        "MYSQL_PASSWORD",
        "MONGO_PASSWORD",
    }
    for name in required:
        assert values.get(name) == "", name


def test_the_example_ice_servers_are_valid_configuration() -> None:
    values = {name: value for name, value, _ in env_example()}
    raw = values["SIGNALING_ICE_SERVERS"]
    assert raw.startswith("'") and raw.endswith("'"), "JSON in .env goes in single quotes"
    settings = load_settings({"SIGNALING_ICE_SERVERS": raw[1:-1]}, dev=True)
    urls = [url for server in settings.ice_servers for url in server["urls"]]
    assert any(url.startswith("turn:127.0.0.1:3478") for url in urls), urls


# ---------------------------------------------------------------- Dockerfile


def test_the_image_is_slim_python_311() -> None:
    instructions = dockerfile_instructions()
    args = dict(a.split("=", 1) for k, a in instructions if k == "ARG" and "=" in a)
    images = [a.split()[0] for k, a in instructions if k == "FROM"]
    resolved = {args.get(i.strip("${}"), i) if i.startswith("${") else i for i in images}
    resolved -= {"build"}  # a stage name
    assert resolved == {"python:3.11-slim"}, images


def test_the_image_runs_as_an_unprivileged_user() -> None:
    users = [a for k, a in final_stage(dockerfile_instructions()) if k == "USER"]
    assert users, "no USER in the final stage: the server would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users


def test_the_image_listens_on_every_interface_on_8080() -> None:
    stage = final_stage(dockerfile_instructions())
    assert ("EXPOSE", "8080") in stage
    env = " ".join(a for k, a in stage if k == "ENV")
    assert "SIGNALING_HOST=0.0.0.0" in env.split()
    assert "SIGNALING_PORT=8080" in env.split()


def test_the_image_health_check_calls_the_health_route() -> None:
    stage = final_stage(dockerfile_instructions())
    [check] = [a for k, a in stage if k == "HEALTHCHECK"]
    command = check.split(" CMD ", 1)[1]
    assert command.startswith("[") and "healthcheck.py" in command, check
    script = REPO / "docker" / "healthcheck.py"
    copies = [a.split() for k, a in stage if k == "COPY"]
    assert ["docker/healthcheck.py", "/usr/local/lib/giftcall/healthcheck.py"] in copies
    assert "/usr/local/lib/giftcall/healthcheck.py" in command
    assert "/api/health" in script.read_text()


def test_the_image_starts_the_server_as_make_run_does() -> None:
    stage = final_stage(dockerfile_instructions())
    [cmd] = [a for k, a in stage if k == "CMD"]
    run = " ".join(makefile_recipe("run"))
    assert "$(BIN)/python -m signaling serve" in run
    assert cmd == '["python", "-m", "signaling", "serve"]'


def test_the_image_installs_what_the_makefile_installs_plus_production_extras() -> None:
    make_installs = pip_installs(makefile_recipe("install"), "$(BIN)/pip")
    [[make_spec]] = make_installs
    runs = [a for k, a in dockerfile_instructions() if k == "RUN"]
    docker_installs = pip_installs(runs, "/opt/venv/bin/pip")
    project = [args for args in docker_installs if args and args[0].startswith(".")]
    assert len(project) == 1, docker_installs
    [[docker_spec]] = project
    make_target, make_extras = requirement(make_spec)
    docker_target, docker_extras = requirement(docker_spec)
    assert docker_target == make_target == "."
    assert make_extras <= docker_extras
    assert docker_extras == setup_extras() - DEV_EXTRAS, "the image's extras vs setup.cfg's"
    # ... and like the Makefile's venv, with pip upgraded first.
    assert ["pip"] in docker_installs
    assert "--upgrade pip" in " ".join(makefile_recipe("$(BIN)/python"))


def test_the_build_context_sends_what_the_dockerfile_copies() -> None:
    ignore = [
        line.strip()
        for line in (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignore[0] == "**", "an allow-list: everything else stays out of the context"
    allowed = {line[1:] for line in ignore if line.startswith("!")}
    assert not allowed & {".venv", ".git", "tests", "bench"}
    for keyword, arguments in dockerfile_instructions():
        if keyword != "COPY" or arguments.startswith("--from"):
            continue
        *sources, _ = arguments.split()
        for source in sources:
            assert (REPO / source).exists(), source
            assert source.rstrip("/") in allowed, f"{source} is not in the build context"


def test_the_image_gets_every_file_of_the_packages(tmp_path: Path) -> None:
    """The image installs the package for real (not editable, unlike ``make
    install``), so a data file that setup.cfg does not ship (templates,
    migration scripts, the web client) exists for the tests but not in the
    image. Build the package from the same context with setuptools' build_py,
    the step that fills the wheel, and compare with the source folders."""
    source = tmp_path / "context"
    source.mkdir()
    copies = [a.split() for k, a in dockerfile_instructions() if k == "COPY"]
    packages: list[str] = []
    for *sources, _ in (c for c in copies if not c[0].startswith("--from")):
        for name in sources:
            if (REPO / name).is_dir():
                packages.append(name)
                shutil.copytree(
                    REPO / name,
                    source / name,
                    ignore=shutil.ignore_patterns("__pycache__", "*.py[cod]"),
                )
            elif not name.startswith("docker/"):
                shutil.copy(REPO / name, source / name)
    assert sorted(packages) == ["persistence", "rtc_bridge", "scheduler", "signaling"]
    built = tmp_path / "lib"
    setup = "import setuptools; setuptools.setup()"
    subprocess.run(
        [sys.executable, "-W", "ignore", "-c", setup, "-q", "build_py", "--build-lib", str(built)],
        cwd=source,
        check=True,
        capture_output=True,
        timeout=120,
    )

    def files(root: Path) -> set[str]:
        return {
            str(path.relative_to(root))
            for package in packages
            for path in (root / package).rglob("*")
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
        }

    missing = files(source) - files(built)
    assert missing == set(), "in the source but not in the installed package (setup.cfg)"


# ----------------------------------------------------- the health check script


@pytest.fixture
async def health_stub() -> AsyncIterator[tuple[int, list[int]]]:
    """A server whose ``GET /api/health`` answers the status at the end of the list."""
    statuses = [200]

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"ok": statuses[-1] == 200}, status=statuses[-1])

    app = web.Application()
    app.router.add_get("/api/health", health)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port, statuses
    finally:
        await runner.cleanup()


async def run_health_check(env: dict[str, str]) -> int:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(DOCKER / "healthcheck.py"),
        env={"HEALTHCHECK_TIMEOUT_S": "3", **env},
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await asyncio.wait_for(proc.wait(), timeout=15)


async def test_health_check_passes_on_200_and_fails_otherwise(
    health_stub: tuple[int, list[int]],
) -> None:
    port, statuses = health_stub
    env = {"SIGNALING_HOST": "0.0.0.0", "SIGNALING_PORT": str(port)}
    assert await run_health_check(env) == 0
    statuses.append(503)
    assert await run_health_check(env) == 1
    statuses.append(200)
    assert await run_health_check({**env, "SIGNALING_HOST": "127.0.0.1"}) == 0


async def test_health_check_fails_when_nothing_listens() -> None:
    assert await run_health_check({"SIGNALING_PORT": str(free_port())}) == 1


def test_health_check_url() -> None:
    health_url = runpy.run_path(str(DOCKER / "healthcheck.py"))["health_url"]
    assert health_url({}) == "http://127.0.0.1:8080/api/health"
    assert health_url({"SIGNALING_HOST": "::", "SIGNALING_PORT": "9000"}) == (
        "http://127.0.0.1:9000/api/health"
    )
    assert health_url({"SIGNALING_HOST": "10.1.2.3", "SIGNALING_PORT": ""}) == (
        "http://10.1.2.3:8080/api/health"
    )
    assert health_url({"SIGNALING_HOST": "fd00::1"}) == "http://[fd00::1]:8080/api/health"
