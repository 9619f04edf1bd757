"""Placeholder: the native backend (torch.ops.pac) lands here."""


def make_backend():
    return None
