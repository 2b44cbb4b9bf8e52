"""Webhooks that outside services post to the server (OpenVidu)."""
