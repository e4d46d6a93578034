"""The dlengine test suite."""
