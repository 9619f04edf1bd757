"""Placeholder: the functional ops land here."""


def _missing(*args, **kwargs):  # pragma: no cover - placeholder
    raise NotImplementedError


packernel2d = pacconv2d = pacconv_transpose2d = pacpool2d = _missing
