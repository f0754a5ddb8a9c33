"""The errors a user can cause and fix, which the CLI reports as one line instead of a traceback."""

from memoryr.checkpoints import DiskFullError, LinkError
from memoryr.evaluation.sweep import SweepError
from memoryr.memory.episodic import MemoryFileError
from memoryr.models import ModelError
from memoryr.tasks.data import DataError
from memoryr.training.config import ConfigError

EXPECTED_ERRORS = (ConfigError, DataError, DiskFullError, LinkError, ModelError, MemoryFileError, SweepError,
                   FileNotFoundError, FileExistsError, ValueError)
