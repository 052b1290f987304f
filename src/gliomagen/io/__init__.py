"""Artefacts every layer reads and writes: atomic files and folders, checkpoints, devices.

The lowest layer of gliomagen beside ``errors`` and ``config``: it imports neither ``data`` nor
``models`` nor ``training``, so training writes through it and generation / evaluation read
through it without importing each other.
"""
