"""Routing: ring, directory, membership."""
