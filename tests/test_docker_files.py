"""The docker/ deployment files, checked statically (no Docker engine needed).

Every YAML parses; the Dockerfiles install ganpipe the way .ci/run does (torch 2.13.0
first); every path the files name exists; every `ganpipe` command in them and in
docs/cluster.md parses; ports, hosts, paths and variables agree across the files.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from ganpipe.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DOC = ROOT / "docs" / "cluster.md"
COMPOSE = DOCKER / "docker-compose.yml"
CLUSTER = DOCKER / "ray-cluster.yaml"
RAYJOB = DOCKER / "kuberay-rayjob.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"
NODE_DOCKERFILES = [DOCKER / "Dockerfile", DOCKER / "Dockerfile.gpu"]
DOCKERFILES = NODE_DOCKERFILES + [DOCKER / "Dockerfile.mlflow"]
TEXT_FILES = DOCKERFILES + [COMPOSE, CLUSTER, RAYJOB, ENV_EXAMPLE, DOC]

STORAGE = "/shared/ganpipe"
S3_STORAGE = "s3://ganpipe-results/sweeps"  # the compose results bucket (RAY_RESULTS_BUCKET in .env.example)
TRACKING_URI = "http://mlflow:5000"
RAY_NODES = ["ray-head", "ray-worker", "driver"]


# ---- helpers -----------------------------------------------------------------------------
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def rayjob_docs() -> list[dict]:
    return [d for d in yaml.safe_load_all(RAYJOB.read_text()) if d]


def rayjob() -> dict:
    return next(d for d in rayjob_docs() if d["kind"] == "RayJob")


def env_example() -> dict[str, str]:
    out = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f".env.example: not KEY=VALUE: {line!r}"
            out[key.strip()] = value.strip()
    return out


def as_list(cmd) -> list[str]:
    """A compose/K8s command (string or list) as a list of words."""
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment", {}) or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    return {k: str(v) for k, v in env.items()}


def k8s_env(container: dict) -> dict[str, object]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def flag(words: list[str], name: str) -> str | None:
    """The value of --name=V or --name V in a word list."""
    for i, w in enumerate(words):
        if w == name and i + 1 < len(words):
            return words[i + 1]
        if w.startswith(name + "="):
            return w.split("=", 1)[1]
    return None


def dockerfile_lines(path: Path) -> list[str]:
    """Instructions with continuation lines joined and comments dropped."""
    lines, cur = [], ""
    for raw in path.read_text().splitlines():
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        lines.append(cur + s)
        cur = ""
    return lines


def dockerfile_args(path: Path) -> dict[str, str]:
    args = {}
    for line in dockerfile_lines(path):
        m = re.match(r"ARG\s+(\w+)=(\S+)", line)
        if m:
            args[m.group(1)] = m.group(2).strip('"')
    return args


def ganpipe_commands() -> list[tuple[str, str]]:
    """(where, command line) for every `ganpipe <subcommand>` in the docker files and the doc."""
    found = []
    subcommands = "sweep|trial|run|promote|sample|ui|features"
    pattern = re.compile(rf"\bganpipe ({subcommands})\b[^\n`'\";|&]*")
    for path in TEXT_FILES:
        text = path.read_text()
        text = re.sub(r"\\\n\s*#?\s*", " ", text)  # shell continuations, also inside comments
        if path == COMPOSE:  # its comments, and the driver's folded `bash -c` script as one line
            comments = [line for line in text.splitlines() if line.lstrip().startswith("#")]
            text = "\n".join([*comments, *as_list(compose()["services"]["driver"]["entrypoint"])])
        for m in pattern.finditer(text):
            line = m.group(0).strip().rstrip(".,:)")
            if line.endswith("--set") or "..." in line or "SWEEP.yaml" in line:
                continue
            found.append((path.name, line))
    return found


# ---- every file parses --------------------------------------------------------------------
def test_all_files_exist():
    for path in TEXT_FILES:
        assert path.is_file(), path


def test_yaml_files_parse():
    c = compose()
    assert {"ray-head", "ray-worker", "driver", "mlflow", "postgres", "minio", "create-bucket"} <= set(c["services"])
    cluster = yaml.safe_load(CLUSTER.read_text())
    assert cluster["provider"]["type"] == "aws"
    for key in ("docker", "available_node_types", "head_node_type", "head_start_ray_commands",
                "worker_start_ray_commands", "setup_commands"):
        assert key in cluster, key
    assert cluster["head_node_type"] in cluster["available_node_types"]
    kinds = {d["kind"]: d for d in rayjob_docs()}
    assert kinds["RayJob"]["apiVersion"] == "ray.io/v1"
    assert "PersistentVolumeClaim" in kinds
    assert env_example()


def test_cluster_launcher_keys_match_rays_schema():
    """Top-level and docker: keys are ones Ray's cluster-launcher schema knows."""
    import json

    ray = pytest.importorskip("ray")
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    cluster = yaml.safe_load(CLUSTER.read_text())
    assert set(cluster) <= set(schema["properties"]), set(cluster) - set(schema["properties"])
    docker_keys = set(schema["properties"]["docker"]["properties"])
    assert set(cluster["docker"]) <= docker_keys, set(cluster["docker"]) - docker_keys


# ---- Dockerfiles -------------------------------------------------------------------------
@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_base_images_are_pinned(path):
    args = dockerfile_args(path)
    froms = [line.split()[1] for line in dockerfile_lines(path) if line.startswith("FROM ")]
    assert froms, f"{path.name}: no FROM"
    for image in froms:
        image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), image)
        assert "$" not in image, f"{path.name}: FROM {image} has an ARG without a default"
        name, _, tag = image.rpartition(":") if "@" not in image else (image, "", "digest")
        assert name and tag and "/" not in tag, f"{path.name}: FROM {image} is not pinned to a tag"
        assert tag != "latest", f"{path.name}: FROM {image} uses latest"


@pytest.mark.parametrize("path", NODE_DOCKERFILES, ids=lambda p: p.name)
def test_node_images_install_like_ci(path):
    """torch==2.13.0 on its own first (as .ci/run), then the project copied in and installed."""
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install -q torch==2.13.0" in ci and "pip install -q -e '.[dev]'" in ci
    lines = dockerfile_lines(path)
    runs = [i for i, line in enumerate(lines) if line.startswith("RUN ")]
    torch_at = next(i for i in runs if re.search(r"pip install .*\btorch==2\.13\.0\b", lines[i]))
    assert re.search(r"pip install\s+(-e\s+)?/app\b", "\n".join(lines)), f"{path.name}: no pip install /app"
    app_at = next(i for i in runs if re.search(r"pip install\s+(-e\s+)?/app\b", lines[i]))
    copy_pkg_at = next(i for i, line in enumerate(lines) if line.startswith("COPY") and " ganpipe " in line + " ")
    assert torch_at < copy_pkg_at < app_at, f"{path.name}: torch, then COPY ganpipe, then pip install /app"
    assert "torch" not in lines[app_at].replace("/app", ""), "torch only in its own step"
    index = dockerfile_args(path)["TORCH_INDEX_URL"]
    if path.name == "Dockerfile":
        assert index.endswith("/whl/cpu"), "CPU image: the CPU build of torch"
    else:
        assert re.search(r"/whl/cu\d+$", index), "GPU image: a CUDA build of torch"
    assert "TORCH_INDEX_URL" in lines[torch_at]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfiles_small_nonroot_and_checked(path):
    text = "\n".join(dockerfile_lines(path))
    assert "PIP_NO_CACHE_DIR=1" in text or "--no-cache-dir" in text, "no pip cache in the image"
    if "apt-get install" in text:
        assert "--no-install-recommends" in text and "rm -rf /var/lib/apt/lists/*" in text
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0"), "runs as a non-root user"
    assert re.search(r"^HEALTHCHECK ", text, re.M), "a HEALTHCHECK"
    assert (DOCKER / f"{path.name}.dockerignore").is_file(), "a Dockerfile-specific .dockerignore"


@pytest.mark.parametrize("path", NODE_DOCKERFILES, ids=lambda p: p.name)
def test_node_images_env(path):
    text = "\n".join(dockerfile_lines(path))
    assert f"MLFLOW_TRACKING_URI={TRACKING_URI}" in text
    assert "RAY_AUTH_MODE=token" in text
    assert re.search(r"mkdir -p .*" + re.escape(STORAGE), text), "the storage mount point exists, owned by the user"


def test_node_images_agree():
    """Ray refuses nodes of another Python patch or Ray version: both node images share them."""
    cpu, gpu = (dockerfile_args(p) for p in NODE_DOCKERFILES)
    for key in ("PYTHON_IMAGE", "RAY_VERSION", "MLFLOW_VERSION"):
        assert cpu[key] == gpu[key], key
    assert dockerfile_args(DOCKER / "Dockerfile.mlflow")["MLFLOW_VERSION"] == cpu["MLFLOW_VERSION"]
    assert rayjob()["spec"]["rayClusterSpec"]["rayVersion"] == cpu["RAY_VERSION"]


# ---- referenced paths exist --------------------------------------------------------------
@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_copy_sources_exist(path):
    for line in dockerfile_lines(path):
        if line.startswith("COPY ") and "--from=" not in line:
            words = [w for w in line.split()[1:] if not w.startswith("--")]
            for src in words[:-1]:
                assert (ROOT / src).exists(), f"{path.name}: COPY {src}: not in the repository"


def test_dockerignore_keeps_what_is_copied():
    for path in DOCKERFILES:
        ignore = (DOCKER / f"{path.name}.dockerignore").read_text().split()
        for line in dockerfile_lines(path):
            if line.startswith("COPY "):
                for src in [w for w in line.split()[1:] if not w.startswith("--")][:-1]:
                    assert f"!{src.rstrip('/')}" in [i.rstrip("/") for i in ignore], f"{src} is let in"


def test_compose_build_files_exist():
    for name, svc in compose()["services"].items():
        if "build" in svc:
            context = (COMPOSE.parent / svc["build"]["context"]).resolve()
            assert context == ROOT, name
            assert (context / svc["build"]["dockerfile"]).is_file(), name


def test_referenced_repo_paths_exist():
    pattern = re.compile(r"(?<![\w/.=-])((?:docker|sweeps|pipelines|docs|tests)/[\w./-]*\w)")
    for path in TEXT_FILES:
        for ref in set(pattern.findall(path.read_text())) - {"docker/.env"}:  # made from .env.example
            assert (ROOT / ref).exists(), f"{path.name} names {ref}, which is not in the repository"


# ---- ganpipe commands parse --------------------------------------------------------------
def test_ganpipe_commands_found_everywhere():
    where = {w for w, _ in ganpipe_commands()}
    assert {COMPOSE.name, CLUSTER.name, RAYJOB.name, DOC.name} <= where, where
    assert "--resume" in " ".join(c for _, c in ganpipe_commands())


@pytest.mark.parametrize("where,command", ganpipe_commands(), ids=lambda x: x if len(x) < 40 else None)
def test_ganpipe_command_parses(where, command):
    words = shlex.split(command)
    assert words[0] == "ganpipe"
    try:
        args = build_parser().parse_args(words[1:])
    except SystemExit:
        pytest.fail(f"{where}: does not parse: {command}")
    if args.command == "sweep":
        assert (ROOT / args.sweep).is_file(), f"{where}: {args.sweep}"
        if args.address:  # a cluster run: shared storage and the compose MLflow
            assert args.address == "auto", f"{where}: {command}"
            assert args.storage in (STORAGE, S3_STORAGE), f"{where}: --storage {args.storage}"
            assert args.tracking_uri == TRACKING_URI, f"{where}: --tracking-uri {args.tracking_uri}"


def test_ganpipe_overrides_load():
    """The --set overrides in the files are valid for the sweep they go with."""
    from ganpipe.config import load_sweep

    seen = set()
    for where, command in ganpipe_commands():
        args = build_parser().parse_args(shlex.split(command)[1:])
        if args.command == "sweep" and (args.sweep, tuple(args.overrides)) not in seen:
            seen.add((args.sweep, tuple(args.overrides)))
            load_sweep(str(ROOT / args.sweep), args.overrides)


# ---- compose: ports, hosts, paths, variables agree ---------------------------------------
def test_mlflow_port_and_host_agree():
    svcs = compose()["services"]
    words = as_list(svcs["mlflow"]["command"])
    port = flag(words, "--port")
    assert flag(words, "--host") == "0.0.0.0"
    assert any(str(p).endswith(f":{port}") for p in svcs["mlflow"]["ports"]), "published container port"
    uri = urlparse(TRACKING_URI)
    assert uri.hostname in svcs and str(uri.port) == port
    allowed = flag(words, "--allowed-hosts").split(",")
    assert uri.hostname in allowed and f"{uri.hostname}:{uri.port}" in allowed and "localhost:*" in allowed
    for name in RAY_NODES:
        assert env_of(svcs[name])["MLFLOW_TRACKING_URI"] == TRACKING_URI, name
    for c in _rayjob_containers():
        assert k8s_env(c).get("MLFLOW_TRACKING_URI", TRACKING_URI) == TRACKING_URI
    assert f"--env MLFLOW_TRACKING_URI={TRACKING_URI}" in yaml.safe_load(CLUSTER.read_text())["docker"]["run_options"]
    assert "5000" in str(svcs["mlflow"]["ports"]) and "localhost:5000" in DOC.read_text()


def test_mlflow_backend_and_artifacts():
    svcs = compose()["services"]
    words = as_list(svcs["mlflow"]["command"])
    backend = flag(words, "--backend-store-uri")
    assert backend.startswith("postgresql://") and "@postgres:5432/" in backend
    pg = env_of(svcs["postgres"])
    for var in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"):
        assert f"${{{var}}}" in backend and pg[var] == f"${{{var}}}", var
    dest = flag(words, "--artifacts-destination")
    assert dest == "s3://${MLFLOW_ARTIFACT_BUCKET}/"
    assert env_of(svcs["create-bucket"])["MLFLOW_ARTIFACT_BUCKET"] == "${MLFLOW_ARTIFACT_BUCKET}"
    assert svcs["mlflow"]["depends_on"]["create-bucket"]["condition"] == "service_completed_successfully"
    assert svcs["mlflow"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_s3_endpoint_and_credentials_agree():
    svcs = compose()["services"]
    minio_port = as_list(svcs["minio"]["command"])[as_list(svcs["minio"]["command"]).index("--address") + 1]
    minio = env_of(svcs["minio"])
    for name in ("mlflow", "create-bucket"):
        env = env_of(svcs[name])
        url = urlparse(env["MLFLOW_S3_ENDPOINT_URL"])
        assert url.hostname == "minio" and f":{url.port}" == minio_port, name
        assert env["AWS_ACCESS_KEY_ID"] == minio["MINIO_ROOT_USER"], name
        assert env["AWS_SECRET_ACCESS_KEY"] == minio["MINIO_ROOT_PASSWORD"], name


def test_ray_nodes_reach_the_results_bucket():
    """--storage s3://ganpipe-results/...: every Ray node has MinIO's endpoint and keys, and the bucket is made."""
    svcs = compose()["services"]
    minio = env_of(svcs["minio"])
    minio_port = flag(as_list(svcs["minio"]["command"]), "--address")
    for name in RAY_NODES:
        env = env_of(svcs[name])
        url = urlparse(env["AWS_ENDPOINT_URL"])
        assert url.hostname == "minio" and f":{url.port}" == minio_port, name
        assert env["AWS_ACCESS_KEY_ID"] == minio["MINIO_ROOT_USER"], name
        assert env["AWS_SECRET_ACCESS_KEY"] == minio["MINIO_ROOT_PASSWORD"], name
        assert env["AWS_DEFAULT_REGION"], name
    bucket = urlparse(S3_STORAGE).hostname
    assert env_example()["RAY_RESULTS_BUCKET"] == bucket
    maker = svcs["create-bucket"]
    assert env_of(maker)["RAY_RESULTS_BUCKET"] == "${RAY_RESULTS_BUCKET}"
    assert 'os.environ["RAY_RESULTS_BUCKET"]' in " ".join(as_list(maker["command"]))
    assert S3_STORAGE in DOC.read_text() and S3_STORAGE in COMPOSE.read_text()


def test_ray_head_port_agrees():
    svcs = compose()["services"]
    head = as_list(svcs["ray-head"]["command"])
    assert "--head" in head and "--block" in head
    port = flag(head, "--port")
    assert f"127.0.0.1:{port}:{port}" in svcs["ray-head"]["ports"]
    client = flag(head, "--ray-client-server-port")
    assert f"127.0.0.1:{client}:{client}" in svcs["ray-head"]["ports"]
    assert flag(as_list(svcs["ray-worker"]["command"]), "--address") == f"ray-head:{port}"
    driver_script = as_list(svcs["driver"]["entrypoint"])[2]
    assert f"ray start --address=ray-head:{port} " in driver_script
    cluster = yaml.safe_load(CLUSTER.read_text())
    head_port = flag(shlex.split(cluster["head_start_ray_commands"][-1].split(";")[-1]), "--port")
    worker_addr = flag(shlex.split(cluster["worker_start_ray_commands"][-1].split(";")[-1]), "--address")
    assert worker_addr == f"$RAY_HEAD_IP:{head_port}"
    head_ports = {p["name"]: p["containerPort"] for p in _rayjob_head()["ports"]}
    assert str(head_ports["gcs-server"]) == port and str(head_ports["client"]) == client


def test_worker_scalable():
    w = compose()["services"]["ray-worker"]
    assert "container_name" not in w and not w.get("ports"), "--scale needs no fixed name or host port"
    assert w["depends_on"]["ray-head"]["condition"] == "service_healthy"


def test_shared_storage_same_path_everywhere():
    svcs = compose()["services"]
    mounts = {name: [v for v in svcs[name]["volumes"] if v.startswith("shared:")] for name in RAY_NODES}
    targets = {m[0].split(":")[1] for m in mounts.values()}
    assert len(targets) == 1, mounts
    (target,) = targets
    assert STORAGE.startswith(target.rstrip("/") + "/")
    assert "shared" in compose()["volumes"]
    cluster = yaml.safe_load(CLUSTER.read_text())
    assert f"--volume {target}:{target}" in cluster["docker"]["run_options"]
    for c in [_rayjob_head(), *_rayjob_workers()]:
        mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        assert mounts["shared"] == target
    spec = rayjob()["spec"]["rayClusterSpec"]
    for tpl in [spec["headGroupSpec"]["template"], *(g["template"] for g in spec["workerGroupSpecs"])]:
        vols = {v["name"]: v for v in tpl["spec"]["volumes"]}
        claim = vols["shared"]["persistentVolumeClaim"]["claimName"]
        pvc = next(d for d in rayjob_docs() if d["kind"] == "PersistentVolumeClaim")
        assert claim == pvc["metadata"]["name"] and "ReadWriteMany" in pvc["spec"]["accessModes"]


def test_ray_auth_consistent():
    """Token auth on every node and driver, with one token (the FACTS pitfall)."""
    svcs = compose()["services"]
    for name in RAY_NODES:
        env = env_of(svcs[name])
        assert env["RAY_AUTH_MODE"] == "token", name
        assert env["RAY_AUTH_TOKEN"].startswith("${RAY_AUTH_TOKEN"), name
    cluster = yaml.safe_load(CLUSTER.read_text())
    assert "--env RAY_AUTH_MODE=token" in cluster["docker"]["run_options"]
    assert "~/.ray/auth_token" in cluster["file_mounts"]
    containers = _rayjob_containers()
    assert len(containers) == 3
    for c in containers:
        env = k8s_env(c)
        assert env["RAY_AUTH_MODE"] == "token", c["name"]
        assert env["RAY_AUTH_TOKEN"]["secretKeyRef"]["name"] == "ganpipe-ray-auth", c["name"]
    assert "RAY_AUTH_MODE=disabled" in DOC.read_text()


def test_real_env_file_is_ignored():
    assert ".env" in (DOCKER / ".gitignore").read_text().split()


def test_env_example_covers_compose_variables():
    text = COMPOSE.read_text().replace("$$", "")
    used = set(re.findall(r"\$\{(\w+)", text)) | set(re.findall(r"\$(\w+)", text))
    provided = env_example()
    assert used <= set(provided), f"missing from .env.example: {sorted(used - set(provided))}"
    for key, value in provided.items():
        if re.search(r"PASSWORD|TOKEN|SECRET", key):
            assert "change-me" in value, f".env.example: {key} must be a placeholder"
    assert len(provided["MINIO_ROOT_PASSWORD"]) >= 8, "MinIO refuses shorter passwords"


def test_images_pinned_in_compose_and_manifests():
    for name, svc in compose()["services"].items():
        image = svc.get("image", "")
        assert image and ":" in image and not image.endswith(":latest"), name
    for c in _rayjob_containers():
        assert not c["image"].endswith(":latest")


def test_rayjob_gpu_workers():
    spec = rayjob()["spec"]
    assert spec["entrypoint"].startswith("ganpipe sweep ")
    groups = spec["rayClusterSpec"]["workerGroupSpecs"]
    assert groups and all(g["minReplicas"] <= g["replicas"] <= g["maxReplicas"] for g in groups)
    for c in _rayjob_workers():
        assert c["resources"]["limits"]["nvidia.com/gpu"] >= 1
    gpu_types = [t for t in yaml.safe_load(CLUSTER.read_text())["available_node_types"] if "gpu" in t]
    assert gpu_types


# ---- RayJob helpers -----------------------------------------------------------------------
def _rayjob_head() -> dict:
    return rayjob()["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]


def _rayjob_workers() -> list[dict]:
    return [g["template"]["spec"]["containers"][0] for g in rayjob()["spec"]["rayClusterSpec"]["workerGroupSpecs"]]


def _rayjob_containers() -> list[dict]:
    submitter = rayjob()["spec"]["submitterPodTemplate"]["spec"]["containers"][0]
    return [_rayjob_head(), *_rayjob_workers(), submitter]
