"""Integrations of PyStorage with frameworks; each module imports its framework.

``pystorage.contrib.django``: a Django cache backend over any storage URL.
"""
