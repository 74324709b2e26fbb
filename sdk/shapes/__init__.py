"""Mean landmark configurations per schema (JSON), read by :mod:`sdk.quality`."""
