"""Dashboard and setup widgets, one per module."""
