"""The one exception type for problems the user can fix.

Entry points print a UserError as a single line (message + fix) and exit non-zero; any other
exception is our bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input, config or environment, with the fix in the message."""

    exit_code = 2

    def __init__(self, message: str, fix: str | None = None):
        self.message = message
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = self.message if not self.fix else f"{self.message} — {self.fix}"
        return " ".join(text.split())  # never let a path or detail break the one-line contract
