"""The settings of ``runtests.py`` for Django's cache suite over PyStorage: Django's own
test settings (tests/test_sqlite.py of the distribution), with PyStorage as the cache of
every test that does not name one."""

from test_sqlite import *  # noqa: F403 - Django's test settings, as runtests.py uses them

CACHES = {
    "default": {
        "BACKEND": "pystorage.contrib.django.PyStorageCache",
        "LOCATION": "memory://",
    },
}
