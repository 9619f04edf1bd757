"""Placeholder: PacCRF, PacCRFLoose land here."""
PacCRF = PacCRFLoose = None
