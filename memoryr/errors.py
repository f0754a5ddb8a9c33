"""The errors a user can cause and fix, which the CLI reports as one line instead of a traceback."""

from memoryr.config import ConfigError
from memoryr.data import DataError
from memoryr.memory import MemoryFileError
from memoryr.models import ModelError
from memoryr.sweep import SweepError

EXPECTED_ERRORS = (ConfigError, DataError, ModelError, MemoryFileError, SweepError, FileNotFoundError, FileExistsError, ValueError)
