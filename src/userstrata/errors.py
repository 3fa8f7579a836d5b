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


class Notice(UserWarning):
    """A warning an operator reads, in English and Chinese: ``str()`` is the English text,
    ``text(lang)`` either one (the CLI shows the one of ``--lang``)."""

    def __init__(self, en: str, zh: str):
        super().__init__(en)
        self.en, self.zh = en, zh

    def text(self, lang: str = "en") -> str:
        return self.zh if lang == "zh" else self.en
