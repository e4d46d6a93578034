"""Unit tests: in-process, no server and no subprocess."""
