"""Placeholder: nd2col and np_gaussian_2d land here (spec §1.2, §5.1)."""


def nd2col(*args, **kwargs):  # pragma: no cover - placeholder
    raise NotImplementedError


def np_gaussian_2d(*args, **kwargs):  # pragma: no cover - placeholder
    raise NotImplementedError
