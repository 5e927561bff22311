"""Utilities used by mmsniper's command-line tools."""
from .checkpoint import (TRUST_DIR_FLAG, TRUST_FILE_ARG, TRUST_FILE_FLAG,
                         TRUSTED_DIRS_ENV, CheckpointMismatchError,
                         CheckpointTrustPolicy, CorruptCheckpointError,
                         UntrustedCheckpointError, check_checkpoint_matches,
                         is_weights_only_error, load_local_checkpoint,
                         trusted_checkpoint_loading, trusted_dirs_from_env)
from .cli import (add_image_source_args, add_runner_args,
                  add_trust_checkpoint_arg, build_tool_runner,
                  load_tool_config, parse_runner_args)
from .memory import peak_rss_bytes, reset_peak_rss
from .setup_env import (AMP_NEEDS_GPU_MSG, check_amp_available, has_amp_device,
                        setup_cpu_distributed)

__all__ = [
    'TRUST_DIR_FLAG', 'TRUST_FILE_FLAG', 'TRUST_FILE_ARG', 'TRUSTED_DIRS_ENV',
    'CheckpointTrustPolicy', 'CheckpointMismatchError',
    'CorruptCheckpointError', 'check_checkpoint_matches',
    'UntrustedCheckpointError', 'is_weights_only_error',
    'load_local_checkpoint', 'trusted_checkpoint_loading',
    'trusted_dirs_from_env', 'AMP_NEEDS_GPU_MSG', 'check_amp_available',
    'has_amp_device', 'setup_cpu_distributed', 'add_runner_args',
    'add_trust_checkpoint_arg',
    'add_image_source_args', 'load_tool_config', 'parse_runner_args',
    'build_tool_runner', 'peak_rss_bytes', 'reset_peak_rss'
]
