"""The two ways a stage stops early, shared by the runner and the stages."""


class StageError(RuntimeError):
    """A stage failed for a reason the user can act on; the message says which."""


class Cancelled(BaseException):
    """The job was cancelled (SIGTERM): not an Exception, so no library swallows it."""
