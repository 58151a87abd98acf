"""Connecting to Ray: join a cluster (`--address`) or start a small in-process one, and what the joined
cluster can do (nodes, resources, shared storage). With ganpipe.tune, the only code that imports Ray."""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import ray

from ganpipe.config import ConfigError, Problem
from ganpipe.config.schema import SweepConfig
from ganpipe.preflight.resources import is_ray_client
from ganpipe.tune.interrupt import sigterm_as_ctrl_c
from ganpipe.tune.storage import Location


def connect_ray(address: str | None, num_cpus: int | None) -> bool:
    """Join a cluster or start a small local Ray; True if this process started it."""
    if ray.is_initialized():
        return False
    if address:
        target = resolve_address(address)
        unreachable = nothing_listening(target)
        if unreachable:
            raise ConfigError([Problem("--address", "address", unreachable)])
        if is_ray_client(target):
            missing = ray_client_missing()
            if missing:
                raise ConfigError([Problem("--address", "address", missing)])
        try:
            if address == "auto" and not os.environ.get("RAY_ADDRESS"):
                # the recorded cluster resolved above; Ray turns token auth on by itself for `auto` when a token
                # exists (never for an explicit address, RAY_ADDRESS included)
                ray.init(address="auto", log_to_driver=True)
            elif is_ray_client(target):
                init_ray_client(target)
            else:
                ray.init(address=target, log_to_driver=True)
        except Exception as err:  # Ray raises ConnectionError, RuntimeError, ... depending on the form
            hint = ""
            if (address != "auto" or os.environ.get("RAY_ADDRESS")) and os.environ.get("RAY_AUTH_MODE") is None:
                hint = ("; Ray 2.60 clusters use token authentication by default, and a driver given an explicit "
                        "address sends the token only with RAY_AUTH_MODE=token (the token from RAY_AUTH_TOKEN or "
                        "~/.ray/auth_token)")
            raise ConfigError([Problem("--address", "address",
                                       f"cannot join the Ray cluster at {target}: {err}{hint}")])
        nodes = alive_nodes()
        cpus = sum(n["Resources"].get("CPU", 0) for n in nodes)
        gpus = sum(n["Resources"].get("GPU", 0) for n in nodes)
        how = f" (--address {address})" if target != address else ""
        print(f"joined the Ray cluster at {target}{how}: {len(nodes)} node(s), {cpus:g} CPUs, {gpus:g} GPUs"
              + (", as a Ray Client" if is_ray_client(target) else ""))
        sigterm_as_ctrl_c()  # ray.init put in Ray's own SIGTERM handler, which exits without closing runs
        return True
    ray.init(
        # "local": always a new in-process Ray; without it ray.init() joins a cluster that `ray start`
        # left running on this machine (and then refuses num_cpus)
        address="local",
        num_cpus=num_cpus or os.cpu_count(),
        object_store_memory=200 * 1024 * 1024,  # trials exchange checkpoints via storage, not objects
        include_dashboard=False,
        configure_logging=True,
        logging_level="WARNING",
    )
    sigterm_as_ctrl_c()  # ray.init put in Ray's own SIGTERM handler, which exits without closing runs
    return True


# what Ray's client proxy on the head answers when the server it starts for this driver exits at start-up: its own
# message, or psutil's when the server exited while the proxy was reading its command line (proxier.py)
CLIENT_SERVER_START_FAILED = ("Starting Ray client server failed", "psutil.ZombieProcess")


def init_ray_client(target: str, retries: int = 2, retry_after_s: float = 3.0) -> None:
    """ray.init on a ray:// address, tried again (up to `retries` times) when the head's per-driver server did
    not start.

    The head's proxy forks one server per driver, and that server dies at start-up now and then with empty logs:
    a gRPC fork race in the proxy (ray-project/ray#63202, ~7 % of connections there; seen twice in this project's
    tests, with each of the two messages above). Each try gets a fresh server; any other failure, or the last
    one, is the user's to see."""
    for attempt in range(retries + 1):
        try:
            ray.init(address=target, log_to_driver=True)
            return
        except Exception as err:  # ray.util.client re-raises the server's error as it came
            if attempt == retries or not any(text in str(err) for text in CLIENT_SERVER_START_FAILED):
                raise
        print(f"Ray Client: the head at {target} could not start a server for this driver; trying again in "
              f"{retry_after_s:g} s", flush=True)
        time.sleep(retry_after_s)


def resolve_address(address: str) -> str:
    """--address as Ray will use it. `auto` means $RAY_ADDRESS, else the cluster last started with
    `ray start --head` on this machine (the address Ray records in its temp folder, $RAY_TMPDIR/ray or
    /tmp/ray). Unlike Ray's own `auto`, never any other Ray that happens to run here."""
    if address != "auto":
        return address
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    try:  # Ray's own record of the last `ray start --head` (a private helper, so guarded)
        from ray._common.utils import get_ray_address_file

        record = Path(get_ray_address_file(None))
    except Exception:
        return address  # let Ray resolve it
    found = record.read_text().strip() if record.is_file() else ""
    if not found:
        raise ConfigError([Problem("--address", "address", "auto: RAY_ADDRESS is not set and no cluster was "
                                   f"started with `ray start --head` on this machine (no {record}); start one, "
                                   "or give HOST:PORT or ray://HOST:10001")])
    return found


def ray_client_missing() -> str | None:
    """Ray Client (ray://) needs grpcio, which ray[tune] does not install."""
    import importlib.util

    if importlib.util.find_spec("grpc") is None:
        return ("ray:// is Ray Client, which needs grpcio (not installed with ray[tune]): "
                f"pip install 'ray[client]=={ray.__version__}', or run the driver on a node of the cluster "
                "with --address auto or HOST:PORT")
    return None


def nothing_listening(address: str) -> str | None:
    """Why HOST:PORT (or ray://HOST:PORT) cannot be a Ray cluster, found in seconds, not Ray's minutes."""
    if address == "auto":
        return None  # Ray finds the local cluster itself and fails fast when there is none
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return f"expected auto, HOST:PORT or ray://HOST:PORT, got {address!r}"
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            return None
    except OSError as err:
        return f"nothing answers at {host}:{port} ({err.strerror or err}); is the Ray head running there?"


def check_shared_storage(storage: Location, given: bool, client: bool = False) -> None:
    """On a multi-node cluster every node must see the storage (checkpoints move between nodes): a marker
    written by the driver is looked for by a task pinned to each node (for S3 with that node's AWS settings).
    A Ray Client driver is no node at all, so there even one node must see what this machine wrote."""
    nodes = alive_nodes()
    if len(nodes) < 2 and not client:
        return
    if not given:
        raise ConfigError([Problem("--storage", "storage", f"required on a cluster of {len(nodes)} nodes: a folder "
                                   "every node sees at the same path (NFS, a shared volume) or s3://BUCKET/PREFIX")])
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    storage.mkdir()
    marker = storage / f".ganpipe-shared-{os.getpid()}-{time.time_ns()}"
    marker.write_text("written by the ganpipe driver")
    try:
        @ray.remote(num_cpus=0)
        def sees(uri: str) -> str | None:
            from ganpipe.tune.storage import Location

            try:
                return None if Location(uri).exists() else "not found"
            except Exception as err:  # e.g. no S3 credentials or endpoint on that node
                return " ".join(str(err).split())[:200]

        checks = {n["NodeManagerAddress"] + " " + n["NodeID"][:8]: sees.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(marker.uri)
            for n in nodes}
        blind = [f"{name} ({why})" for name, why in zip(checks, ray.get(list(checks.values()), timeout=120)) if why]
    finally:
        marker.delete()
    if blind:
        hint = ("give every node the same AWS settings (AWS_ENDPOINT_URL, credentials)" if storage.remote
                else "give a folder shared by every node at the same path")
        raise ConfigError([Problem("--storage", "storage", f"{storage} is not visible on node(s) {', '.join(blind)}; "
                                   + hint)])


def check_resources(sweep: SweepConfig) -> None:
    """A request no node can ever satisfy would leave trials PENDING forever: refuse it now."""
    cpu, gpu = sweep.resources.cpu, sweep.resources.gpu
    nodes = [n["Resources"] for n in alive_nodes()]
    if any(n.get("CPU", 0) >= cpu and n.get("GPU", 0) >= gpu for n in nodes):
        return
    have = ", ".join(f"cpu {n.get('CPU', 0):g} gpu {n.get('GPU', 0):g}" for n in nodes) or "no nodes"
    raise ConfigError([Problem(sweep.source or "sweep", "resources",
                               f"a trial asks for cpu {cpu:g}, gpu {gpu:g} but no node has that (nodes: {have})")])


def alive_nodes() -> list[dict]:
    return [n for n in ray.nodes() if n.get("Alive")]


def disconnect(started_here: bool) -> None:
    """Shut down the Ray this process started (a joined cluster keeps running)."""
    if started_here:
        ray.shutdown()


def is_connected() -> bool:
    return ray.is_initialized()
