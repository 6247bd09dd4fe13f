"""Defaults that presets, URLs and layers share, in a module that imports nothing: a
preset's signature names them without loading the layer they belong to."""

#: Where a Redis storage keeps its entries when it is given no prefix.
DEFAULT_PREFIX = "pystorage:"
