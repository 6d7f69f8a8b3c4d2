"""The one exception type that reaches the user as a single line (exit code 2).

Anything a researcher can fix by editing a config or a flag raises `UserError`; `main.py`
prints its message without a traceback. Bugs in the harness still raise normally.
"""


class UserError(Exception):
    """A problem with the user's input, with a message that names the fix."""
