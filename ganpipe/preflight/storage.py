"""--storage, checked before anything starts: a folder, or an S3 prefix that can be written."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ganpipe.config.errors import ConfigError, Problem

if TYPE_CHECKING:  # annotations only
    from ganpipe.tune.storage import Location


def parse_storage(given: str | None) -> Location:
    """--storage checked before anything starts: a folder, or an S3 prefix that can be written."""
    from ganpipe.tune.storage import Location, check_location  # optuna and pyarrow: only where a run starts

    try:
        storage = Location.parse(given)
    except ValueError as err:
        raise ConfigError([Problem("--storage", "storage", str(err))])
    why = check_location(storage)
    if why:
        raise ConfigError([Problem("--storage", "storage", why)])
    return storage
