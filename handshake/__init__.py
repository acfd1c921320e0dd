"""The contract between host and Pi: messages, signing, the client. Imports neither side."""

__version__ = "0.1.0"
