"""Placeholder: create_YXRGB, create_position_feats land here."""
create_YXRGB = create_position_feats = None
