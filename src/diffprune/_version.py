"""The package version, recorded in every task file."""

__version__ = "0.1.0"
