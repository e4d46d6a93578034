"""Integration tests: real servers over 127.0.0.1, driven in-process or one component at a time."""
