"""The one exception type a user sees: it always names the cause and the fix."""


class OomguardError(Exception):
    """An error with a cause and a fix, printed to the user without a traceback."""

    def __init__(self, cause: str, fix: str = ""):
        self.cause = cause
        self.fix = fix
        super().__init__(f"{cause}: {fix}" if fix else cause)
