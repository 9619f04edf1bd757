"""Compatibility: torch-version shims (:mod:`.torch_version`) and pacnet drop-in modules
(:mod:`.pac`, :mod:`.paccrf`)."""
