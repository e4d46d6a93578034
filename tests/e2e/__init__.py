"""End-to-end tests: the CLI, supervisor and worker processes, crash tests included."""
