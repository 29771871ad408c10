"""The one exception type that carries a message meant for the user."""


class InputError(ValueError):
    """Bad input that the user can fix: the message says what was wrong and what to do.

    Widgets show it as a napari notification and the command line prints it
    without a traceback; any other exception is a bug.
    """
