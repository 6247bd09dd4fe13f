"""PyStorage for asyncio: ``AsyncStorage``, the stacks of ``Storage`` awaited.

``pystorage.aio.layers`` holds the async twin of each wrapper layer, generated from the
sync layer by ``tools/generate_async.py`` (see docs/async.md).
"""
