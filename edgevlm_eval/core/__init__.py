"""Layer 1, the core: types, errors, I/O helpers, labels, metrics, sampling, images, grounding, task
YAML, and the schemas of what is written. Pure functions and small dataclasses; imports nothing
above it (tasks, model_adapters, collab, app)."""
