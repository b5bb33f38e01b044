"""``.studio`` project files: the SQLite store, its migrations and the generation log."""
