"""Exceptions a user can fix; ``code`` is stable, ``hint`` says how."""


class UserstrataError(Exception):
    """An error the user can fix; ``code`` is stable, ``hint`` says how. ``zh`` and ``hint_zh``
    are the Chinese texts an operator reads with ``--lang zh`` (English when not given)."""

    code = "error"

    def __init__(self, message: str, *, hint: str | None = None, zh: str | None = None,
                 hint_zh: str | None = None):
        super().__init__(message)
        self.hint = hint
        self.zh, self.hint_zh = zh, hint_zh

    def text(self, lang: str = "en") -> str:
        return self.zh if lang == "zh" and self.zh else str(self)

    def hint_text(self, lang: str = "en") -> str | None:
        return self.hint_zh if lang == "zh" and self.hint_zh else self.hint


class InputError(UserstrataError):
    code = "invalid_input"


class ConfigError(UserstrataError):
    code = "invalid_config"


class NotFoundError(UserstrataError):
    code = "not_found"


class OutOfMemoryError(UserstrataError):
    """The engine ran out of memory within its limit: ``[engine] memory_limit`` is the remedy."""

    code = "out_of_memory"


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
