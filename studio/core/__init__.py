"""Pure-Python core: requests, jobs, documents, history, metadata. No Qt, no torch."""
