"""Generation requests, the job runner with its two channels, events and cancel tokens."""
