"""Placeholder: PacConv2d, PacConvTranspose2d, PacPool2d land here."""
PacConv2d = PacConvTranspose2d = PacPool2d = None
