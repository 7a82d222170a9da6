"""Course systems reimplemented as comparators for MMQ (they import from mmq, never the reverse)."""
