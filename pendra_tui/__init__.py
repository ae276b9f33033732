"""The Pendra worker terminal app (Textual)."""
