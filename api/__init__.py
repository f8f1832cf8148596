"""winnow: api."""
