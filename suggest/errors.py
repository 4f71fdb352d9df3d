"""The one exception tree of Keystroke.

    KeystrokeError
    ├── DataError        malformed input data (names the file and line)
    ├── ArtifactError    missing, corrupt or version-mismatched index artifact
    └── InvalidQuery     a request field is out of range (names the field)

HTTP status codes live only in the web layer (`suggest.app`).
"""

from __future__ import annotations

__all__ = ["KeystrokeError", "DataError", "ArtifactError", "InvalidQuery"]


class KeystrokeError(Exception):
    """Base of every error Keystroke raises on purpose."""


class DataError(KeystrokeError):
    def __init__(self, message: str, path: str | None = None, line: int | None = None):
        where = f"{path}:{line}: " if path and line else (f"{path}: " if path else "")
        super().__init__(f"{where}{message}")
        self.path, self.line = path, line


class ArtifactError(KeystrokeError):
    """The artifact cannot be served; the message says why and what to do."""


class InvalidQuery(KeystrokeError):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message
