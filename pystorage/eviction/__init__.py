"""Eviction policies: which keys a bounded store keeps (see ``tinylfu.py``)."""
