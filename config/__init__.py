"""The configuration: one schema for every YAML key, loading, validation, defaults and the reference.

    from config import load_config
    opt = load_config('yamls/adashare/nyu_v2_3task.yml', 'train_policy')

    python tools/config.py --markdown                       # the configuration reference (docs/config.md)
    python tools/config.py yamls/x.yml --script re-train    # validate a file, print the options

schema.py holds the keys, load.py reads and validates a file, reference.py renders docs/config.md.
"""
from config.load import (check_exp_ids, config_changes, format_options, load_config, recorded_config,  # noqa: F401
                         resolve_path, validate)
from config.reference import readme_with_reference, schema_markdown  # noqa: F401
from config.schema import (ALL, ARCHITECTURES, BACKBONE_BLOCKS, DATASET_TASKS, DATASETS, KEYS, REPO_ROOT,  # noqa: F401
                           REQUIRED, SCHEMA, SCRIPTS, SPLITS, TASKS, WEIGHTING_METHODS, ConfigError,
                           ConfigFileNotFoundError, Derived, Key, backbone_blocks)
from utils.checks import Check, Integer, Nullable, Number  # noqa: F401 (the value checks weighting args use)
