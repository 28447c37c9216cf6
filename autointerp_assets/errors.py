"""The one exception type for bad input: the user, not the code, has something to fix.

Every check of a config field, file, key, credential or endpoint raises a `UserError`
(or a subclass) whose message names the file or field and says what to do. The CLI
prints it as one line without a traceback; in Dagster it becomes a `dg.Failure` with
that description (`assets.common.fails_clearly`). Anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input; the message names the file or field and the fix."""


class StorageError(UserError):
    """The storage root cannot be written."""


class ModelLoadError(UserError, OSError):
    """The subject model cannot be found or loaded."""


class PartitionKeyError(UserError, KeyError):
    """A layer or latent-range key that the project does not have."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class EndpointError(UserError, ConnectionError):
    """The LLM endpoint cannot be reached, or refuses the API key."""

