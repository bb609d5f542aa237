"""Tools for working on the repository, outside the wheel (``make diagram``)."""
