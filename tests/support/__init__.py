"""Helpers shared by the tests: real local servers and tiny models built without downloads."""
