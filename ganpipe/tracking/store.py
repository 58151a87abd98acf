"""Where the tracking store is: the URI a command uses, whether it can be reached, an MlflowClient on it."""
from __future__ import annotations

import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from mlflow.tracking import MlflowClient

DEFAULT_URI = "sqlite:///mlflow.db"
DATABASE_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}  # SQLAlchemy stores MLflow accepts
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"

def uri_source(cli_uri: str | None, config_uri: str = "") -> str:
    """Where resolve_uri takes the URI from: "--tracking-uri", "tracking.uri" (the sweep file),
    "$MLFLOW_TRACKING_URI" or "default"; for messages that blame the right place."""
    return ("--tracking-uri" if cli_uri else "tracking.uri" if config_uri
            else f"${TRACKING_URI_ENV}" if os.environ.get(TRACKING_URI_ENV) else "default")


def resolve_uri(cli_uri: str | None, config_uri: str = "") -> str:
    """--tracking-uri, then the sweep's tracking.uri, then $MLFLOW_TRACKING_URI, then ./mlflow.db.

    A relative sqlite path is made absolute here, in the driver: Tune runs trials in
    their own working directories, where a relative path would mean another file.
    """
    uri = cli_uri or config_uri or os.environ.get(TRACKING_URI_ENV) or DEFAULT_URI
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())
    return uri


def shareable_uri(uri: str) -> str:
    """`uri` as a page others may read should show it: no password (postgresql://USER:PASSWORD@HOST/DB), and a
    sqlite file under the working folder relative to it (sqlite:///mlflow.db), else with `~` for the home
    folder, so the user's own paths stay out of a shared report."""
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):])
        for base, shown in ((Path.cwd(), ""), (Path.home(), "~/")):
            try:
                return "sqlite:///" + shown + str(path.relative_to(base))
            except ValueError:
                continue
        return uri
    parts = urllib.parse.urlsplit(uri)
    if parts.password is not None:
        host = parts.netloc.rsplit("@", 1)[1]
        return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
    return uri


def check_reachable(uri: str, timeout: float = 5.0) -> str | None:
    """None if the tracking store can be used, else why not (checked before anything starts)."""
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:
                if response.status == 200:
                    return None
                return f"tracking server {uri} answered /health with HTTP {response.status}"
        except (urllib.error.URLError, OSError) as err:
            return f"tracking server {uri} is unreachable ({getattr(err, 'reason', err)})"
    if uri.startswith("sqlite:///"):
        folder = Path(uri[len("sqlite:///"):]).parent
        if not folder.is_dir():
            return f"folder {folder} of the sqlite tracking store does not exist"
        if not os.access(folder, os.W_OK):
            return f"folder {folder} of the sqlite tracking store is not writable"
        return None
    scheme = uri.split("://", 1)[0].split("+", 1)[0] if "://" in uri else ""
    if scheme in DATABASE_PORTS:  # a database server: is anything listening? (its credentials show later)
        parsed = urllib.parse.urlsplit(uri)
        try:
            host, port = parsed.hostname, parsed.port or DATABASE_PORTS[scheme]
        except ValueError as err:
            return f"{uri}: {err}"
        try:
            socket.create_connection((host or "localhost", port), timeout=timeout).close()
        except OSError as err:
            return f"database server {host}:{port} of the tracking store is unreachable ({err.strerror or err})"
        return None
    if (scheme == "file" or not scheme) and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() in ("true", "1"):
        return None  # MLflow's folder store, which MLflow 3 only opens when told to
    folder = "" if scheme not in ("file", "") else (" (a local folder: MLflow 3 refuses its file store unless "
                                                      "MLFLOW_ALLOW_FILE_STORE=true; use sqlite:///FILE.db)")
    return (f"{uri}: unsupported tracking URI{folder}; use http(s)://HOST:PORT (a tracking server), sqlite:///FILE.db "
            f"or {', '.join(f'{s}://...' for s in DATABASE_PORTS)}")


def some_names(names: list[str], shown: int = 10) -> str:
    """'a, b, c' for an error message that lists what exists; at most `shown`, then '...'; 'none' if empty.
    Callers ask the store for shown + 1 names, which is enough to know whether there are more."""
    return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "") or "none"


def store_missing(uri: str) -> bool:
    """True for a sqlite store whose file does not exist yet: a read-only lookup (promote, sample) must say so,
    not create it (MLflow creates the file and its tables on first use)."""
    return uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists()


def client(uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=uri)
