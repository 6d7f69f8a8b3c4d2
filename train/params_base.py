"""Old home of `param` and the parameter-dataclass machinery, kept so task files written against it
(the README's example once imported it from here) still import; use core.params_base."""
from core.params_base import *  # noqa: F401,F403
