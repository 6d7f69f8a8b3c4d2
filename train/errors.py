"""Old home of `UserError`, kept so task files and notebooks written against it still import; use core.errors."""
from core.errors import UserError

__all__ = ["UserError"]
