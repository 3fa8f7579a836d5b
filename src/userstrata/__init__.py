"""userstrata: user value stratification and lifecycle operations (用户价值分层与生命周期运营)."""

from userstrata.config import Settings
from userstrata.errors import ConfigError, InputError, NotFittedError, NotFoundError, UserstrataError

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "InputError",
    "NotFittedError",
    "NotFoundError",
    "Settings",
    "UserstrataError",
    "Workspace",
    "__version__",
]


def __getattr__(name: str):
    # the Workspace pulls in every layer; import it on first use so `import userstrata` is light
    if name == "Workspace":
        from userstrata.workspace import Workspace

        return Workspace
    raise AttributeError(f"module 'userstrata' has no attribute {name!r}")
