"""The project's one error root and its few meaningful subclasses (every error class lives here).

Every message says what was expected and what was found, on one line, so that the CLI can
print it as is and exit with code 2; the registry server maps the classes to HTTP statuses.
"""

from __future__ import annotations


class EdgeBertError(Exception):
    """Root of every error the toolkit raises on purpose."""


class InputError(EdgeBertError, ValueError):
    """A file, directory or argument given by the user is missing, malformed or unsupported (a
    ValueError too: code that expects the built-in for a bad value still catches it)."""


class NotFoundError(InputError):
    """A named thing (device, artifact, Thing, file) does not exist (HTTP 404)."""


class CheckpointError(InputError):
    """A model checkpoint directory cannot be loaded (missing/corrupt files, unsupported config)."""


class DescriptionError(InputError):
    """A device or model description (WoT TD, RDF) is invalid (HTTP 400). ``fields`` lists every
    (field, description) found wrong, where a validator names them (WoT Discovery's
    ``validationErrors``); the message states the first."""

    def __init__(self, message: str, fields: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.fields = fields


class RequestRefused(InputError):
    """A request refused by a limit or a rule; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class QueryError(InputError):
    """A SPARQL query is malformed, not allowed, or its result is too large (HTTP 400)."""


class QueryTimeoutError(QueryError):
    """A query did not finish within its time limit (HTTP 503)."""


class ArtifactError(EdgeBertError):
    """An artifact directory is missing files, has a bad manifest or fails its sha256 checks."""


class ConversionError(EdgeBertError):
    """The converter could not produce an artifact from a valid input (a bug or a numeric failure)."""


class ProtocolError(EdgeBertError):
    """A payload that is not a valid protocol message (the reason says what was wrong)."""


class BrokerError(EdgeBertError):
    """The MQTT broker is unreachable or refused us."""


class StoreError(EdgeBertError):
    """The triple store is unreachable or refused a request (HTTP 502)."""


class ToolchainError(EdgeBertError):
    """A compiler, emulator or size tool the firmware export needs is missing or failed."""


class BudgetError(InputError):
    """A firmware build does not fit the flash/RAM budget it was asked to meet."""
