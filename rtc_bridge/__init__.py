"""Media backends. Imports nothing of the project."""
