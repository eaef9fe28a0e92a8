"""The project's one error root and its few meaningful subclasses.

Every message says what was expected and what was found, on one line, so that the CLI can
print it as is and exit with code 2.
"""

from __future__ import annotations


class EdgeBertError(Exception):
    """Root of every error the toolkit raises on purpose."""


class InputError(EdgeBertError):
    """A file, directory or argument given by the user is missing, malformed or unsupported."""


class CheckpointError(InputError):
    """A model checkpoint directory cannot be loaded (missing/corrupt files, unsupported config)."""


class ArtifactError(EdgeBertError):
    """An artifact directory is missing files, has a bad manifest or fails its sha256 checks."""


class ConversionError(EdgeBertError):
    """The converter could not produce an artifact from a valid input (a bug or a numeric failure)."""
