"""Gifts: general ones, and special ones that book a call."""
