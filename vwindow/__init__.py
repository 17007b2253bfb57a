"""vwindow domain core: config, errors, models, storage, cases, auth and the CLI."""

__version__ = "0.1.0"
