"""Everything that touches the world before a run starts: data files, feature networks, resources, storage,
the client mode. Each check raises ConfigError (exit 2) naming the file or flag, the key and what is allowed."""
from ganpipe.preflight.data import check_data, data_problems_as_config_errors
from ganpipe.preflight.files import check_files, load_checked_sweep
from ganpipe.preflight.resources import check_client_mode, check_local_resources
from ganpipe.preflight.storage import parse_storage

__all__ = ["check_client_mode", "check_data", "check_files", "check_local_resources", "data_problems_as_config_errors",
           "load_checked_sweep", "parse_storage"]
