"""Exceptions a user can fix; ``code`` is stable, ``hint`` says how."""


class UserstrataError(Exception):
    """An error the user can fix; ``code`` is stable, ``hint`` says how."""

    code = "error"

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


class InputError(UserstrataError):
    code = "invalid_input"


class ConfigError(UserstrataError):
    code = "invalid_config"


class NotFoundError(UserstrataError):
    code = "not_found"


class NotFittedError(UserstrataError, AttributeError):
    code = "not_fitted"
