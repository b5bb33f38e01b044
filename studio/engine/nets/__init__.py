"""Network classes of the embedded studio-tiny models, used by the engine and by training."""
