"""Finding and loading models: discovery, families, folders, single files, the hub cache."""
