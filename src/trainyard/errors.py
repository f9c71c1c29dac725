"""Errors a user can cause. The CLI prints them on one line and exits 2."""


class TrainyardError(Exception):
    """Base class for errors caused by user input (bad file, bad flag, bad run directory).

    The message must name the file, column or row at fault and say what to do.
    """


class DataError(TrainyardError):
    """The data file or folder cannot be used as given."""


class ConfigError(TrainyardError):
    """A flag or config file value is invalid."""


class RunError(TrainyardError):
    """A run directory is missing, incomplete or not trustworthy."""
