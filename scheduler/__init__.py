"""Timed jobs of the call lifecycle. Imports only ``persistence``."""
