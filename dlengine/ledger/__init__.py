"""The SQLite ledger: the only code that speaks SQL (see docs/architecture.md)."""
