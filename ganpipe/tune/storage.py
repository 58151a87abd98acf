"""Where sweeps keep Tune's results and checkpoints: a local or shared folder, or S3.

`--storage` is a folder (default ./ray_results, on a cluster one that every node sees at
the same path) or `s3://bucket/prefix`. A `Location` is one folder of it; the driver and
the pipeline runner read and write their small state files through it, so a folder and
an S3 prefix behave alike. Tune gets `Location.uri` as its `storage_path` and resolves it
itself on every node with pyarrow's S3 filesystem, which reads the standard AWS settings
of each process: AWS_ENDPOINT_URL (an S3-compatible server such as MinIO), the
credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ~/.aws, an instance
role) and AWS_DEFAULT_REGION.

The Optuna study is a sqlite file written by the driver alone. Next to local results it
is `<experiment>/optuna.db`; sqlite cannot live in S3, so with S3 the driver's working
copy is on its own disk, `$GANPIPE_HOME/studies/<experiment>-<hash of the S3 URI>/optuna.db`
(default ~/.cache/ganpipe/...), and a consistent snapshot of it is uploaded to
`<experiment>/optuna.db` in S3 while the sweep runs (`upload_study`). `--resume` downloads
the snapshot when the driver's disk has no copy or an older one (`fetch_study`), so a sweep
can be resumed from another machine, and back again. `StudyStorage` pickles as the experiment URI,
not as a file path, so Tune's saved searcher finds the study wherever it is resumed.
"""
from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import tempfile
import time
from datetime import datetime
from pathlib import Path

import optuna
import pyarrow.fs as pafs

STUDY_FILE = "optuna.db"
REMOTE_SCHEMES = ("s3",)


class Location:
    """A folder: an absolute local path, or `s3://bucket/key` (no trailing slash)."""

    def __init__(self, uri: str):
        self.remote = "://" in uri
        self.uri = uri.rstrip("/") if self.remote else str(Path(uri).expanduser().resolve())

    @classmethod
    def parse(cls, given: str | None) -> "Location":
        """--storage as given (default ./ray_results); raises ValueError with what is allowed."""
        value = given or "ray_results"
        if "://" in value:
            scheme, _, rest = value.partition("://")
            if scheme not in REMOTE_SCHEMES:
                raise ValueError(f"{scheme}:// is not supported: give a folder (local or shared by every node) "
                                 "or s3://BUCKET/PREFIX")
            if not rest.strip("/"):
                raise ValueError(f"{value!r} names no bucket: give s3://BUCKET/PREFIX")
        return cls(value)

    # ---- names -----------------------------------------------------------------------
    def __truediv__(self, name: str) -> "Location":
        return Location(f"{self.uri}/{name}")

    def __str__(self) -> str:
        return self.uri

    def __repr__(self) -> str:
        return f"Location({self.uri!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Location) and other.uri == self.uri

    def __hash__(self) -> int:
        return hash(self.uri)

    @property
    def name(self) -> str:
        return self.uri.rsplit("/", 1)[-1]

    @property
    def parent(self) -> "Location":
        return Location(self.uri.rsplit("/", 1)[0])

    # ---- files (small state files; checkpoints go through Ray's Checkpoint API) ------------
    @property
    def fs(self) -> tuple[pafs.FileSystem, str]:
        return _filesystem(self.uri)

    def exists(self) -> bool:
        if not self.remote:
            return Path(self.uri).exists()
        fs, path = self.fs
        return fs.get_file_info(path).type != pafs.FileType.NotFound

    def mtime(self) -> float | None:
        """Last modification, seconds since the epoch; None if missing."""
        if not self.remote:
            path = Path(self.uri)
            return path.stat().st_mtime if path.exists() else None
        fs, path = self.fs
        info = fs.get_file_info(path)
        return None if info.type == pafs.FileType.NotFound or info.mtime is None else info.mtime.timestamp()

    def read_text(self) -> str:
        if not self.remote:
            return Path(self.uri).read_text()
        fs, path = self.fs
        with fs.open_input_stream(path) as f:
            return f.read().decode()

    def write_text(self, text: str) -> None:
        if not self.remote:
            Path(self.uri).write_text(text)
            return
        fs, path = self.fs
        with fs.open_output_stream(path) as f:
            f.write(text.encode())

    def mkdir(self) -> None:
        if self.remote:
            fs, path = self.fs
            fs.create_dir(path, recursive=True)
        else:
            Path(self.uri).mkdir(parents=True, exist_ok=True)

    def delete(self) -> None:
        if not self.remote:
            Path(self.uri).unlink(missing_ok=True)
            return
        fs, path = self.fs
        try:
            fs.delete_file(path)
        except FileNotFoundError:
            pass

    def upload(self, source: Path) -> None:
        fs, path = self.fs
        pafs.copy_files(str(source), path, destination_filesystem=fs)

    def download(self, target: Path) -> None:
        fs, path = self.fs
        target.parent.mkdir(parents=True, exist_ok=True)
        pafs.copy_files(path, str(target), source_filesystem=fs)

    def stamped(self, name: str) -> list["Location"]:
        """Sub-folders `NAME-YYYYmmdd-HHMMSS` (what `stamped_folder` makes), oldest first. Exactly NAME: a sweep
        `ring8` must not pick up `ring8-long-...`."""
        pattern = re.compile(re.escape(name) + r"-\d{8}-\d{6}")
        return [p for p in self.folders(f"{name}-") if pattern.fullmatch(p.name)]

    def stamped_folder(self, name: str) -> "Location":
        """A new sub-folder name for a run of `name` started now."""
        return self / f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"

    def folders(self, prefix: str) -> list["Location"]:
        """Sub-folders whose name starts with `prefix`, sorted by name (none if this folder is missing)."""
        if not self.remote:
            root = Path(self.uri)
            return [Location(str(p)) for p in sorted(root.glob(f"{prefix}*")) if p.is_dir()]
        fs, path = self.fs
        infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        names = sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory and i.base_name.startswith(prefix))
        return [self / name for name in names]


_FILESYSTEMS: dict[tuple, pafs.FileSystem] = {}


def _filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """pyarrow's filesystem for a URI (one per bucket: resolving one may ask S3 for the bucket's region)."""
    if "://" not in uri:
        return pafs.LocalFileSystem(), uri
    scheme, _, rest = uri.partition("://")
    bucket = rest.split("/", 1)[0]
    key = (f"{scheme}://{bucket}", os.environ.get("AWS_ENDPOINT_URL"))
    if key not in _FILESYSTEMS:
        _FILESYSTEMS[key] = pafs.FileSystem.from_uri(key[0])[0]
    return _FILESYSTEMS[key], rest


# ---- the pre-flight check -------------------------------------------------------------------
def endpoint() -> str:
    url = os.environ.get("AWS_ENDPOINT_URL")
    return f"endpoint {url} (AWS_ENDPOINT_URL)" if url else "AWS S3 (no AWS_ENDPOINT_URL set)"


def credentials_source() -> str:
    if os.environ.get("AWS_ACCESS_KEY_ID"):
        return "credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
    if os.environ.get("AWS_PROFILE"):
        return f"credentials of profile {os.environ['AWS_PROFILE']} (AWS_PROFILE)"
    files = [os.environ.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"),
             os.environ.get("AWS_CONFIG_FILE", "~/.aws/config")]
    found = [f for f in files if Path(f).expanduser().is_file()]
    if found:
        return f"credentials from {found[0]}"
    if os.environ.get("AWS_WEB_IDENTITY_TOKEN_FILE") or os.environ.get("AWS_CONTAINER_CREDENTIALS_FULL_URI") \
            or os.environ.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        return "credentials of the pod/container role"
    return ("no credentials found (no AWS_ACCESS_KEY_ID, AWS_PROFILE or ~/.aws/credentials; only an instance "
            "role would be left)")


def _why(err: Exception, uri: str) -> str:
    text = " ".join(str(err).split())
    if "NETWORK_CONNECTION" in text or "curlCode" in text:
        what = f"cannot reach {endpoint()}"
    elif any(s in text for s in ("ACCESS_DENIED", "INVALID_ACCESS_KEY", "SIGNATURE_DOES_NOT_MATCH", "HTTP status 403",
                                 "InvalidAccessKeyId", "AccessDenied")):
        what = f"access denied ({credentials_source()})"
    else:
        what = f"cannot use it ({endpoint()}, {credentials_source()})"
    return f"{uri}: {what}: {text[:300]}"


def check_location(loc: Location) -> str | None:
    """None if results can be written there, else why not; for S3: bucket, endpoint and credentials, by
    writing, reading and deleting a small marker object (what Tune itself will do)."""
    if not loc.remote:
        return _local_why(Path(loc.uri))
    try:
        fs, path = loc.fs
        bucket = path.split("/", 1)[0]
        if fs.get_file_info(bucket).type == pafs.FileType.NotFound:
            return (f"{loc.uri}: bucket {bucket!r} does not exist at {endpoint()}; create it first "
                    f"(e.g. `aws s3 mb s3://{bucket}`)")
        marker = loc / f".ganpipe-check-{os.getpid()}-{time.time_ns()}"
        marker.write_text("written by the ganpipe driver's storage check")
        try:
            if marker.read_text() != "written by the ganpipe driver's storage check":
                return f"{loc.uri}: a marker object written there reads back differently"
        finally:
            marker.delete()
    except (OSError, ValueError) as err:  # pyarrow raises OSError for S3 errors
        return _why(err, loc.uri)
    return None


def _local_why(folder: Path) -> str | None:
    """None if `folder` is, or can become, a folder this process writes to; tried for real (as root,
    permission bits say little) and whatever the try created is removed again."""
    if folder.exists() and not folder.is_dir():
        return f"{folder} is a file, not a folder"
    created = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        return f"{folder} is not a folder Tune results can be written to ({err.strerror or err})"
    finally:
        for made in created:
            try:
                made.rmdir()
            except OSError:
                pass
    return None


# ---- the Optuna study --------------------------------------------------------------------------
def cache_root() -> Path:
    home = os.environ.get("GANPIPE_HOME")
    return Path(home).expanduser() if home else Path.home() / ".cache" / "ganpipe"


def study_path(exp: Location) -> Path:
    """Where the driver keeps the experiment's Optuna sqlite file."""
    if not exp.remote:
        return Path(exp.uri) / STUDY_FILE
    digest = hashlib.sha256(exp.uri.encode()).hexdigest()[:12]
    return cache_root() / "studies" / f"{exp.name}-{digest}" / STUDY_FILE


def fetch_study(exp: Location) -> Path:
    """The working copy of the study; with S3, the experiment's snapshot is downloaded when this disk
    lacks a copy or has an older one (the sweep went on from another machine since)."""
    path = study_path(exp)
    if exp.remote:
        snapshot = (exp / STUDY_FILE).mtime()
        if snapshot is not None and (not path.exists() or path.stat().st_mtime < snapshot):
            (exp / STUDY_FILE).download(path)
    return path


def upload_study(exp: Location) -> bool:
    """Upload a consistent copy (sqlite's backup API) of the study to the experiment folder in S3."""
    path = study_path(exp)
    if not exp.remote or not path.exists():
        return False
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / STUDY_FILE
        src, dst = sqlite3.connect(str(path), timeout=30), sqlite3.connect(str(copy))
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()
        (exp / STUDY_FILE).upload(copy)
    return True


class StudyStorage(optuna.storages.RDBStorage):
    """The experiment's study; pickled (in Tune's searcher state) as the experiment URI, not a file path."""

    def __init__(self, exp_uri: str):
        self.exp_uri = exp_uri
        path = fetch_study(Location(exp_uri))
        path.parent.mkdir(parents=True, exist_ok=True)
        super().__init__(f"sqlite:///{path}")

    def __reduce__(self):
        return (StudyStorage, (self.exp_uri,))
