"""Checkpoint loading and the compact encoders (host side)."""
