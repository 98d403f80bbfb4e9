"""Maintenance scripts of the repository, outside the installed package."""
