"""Django's ``BaseCacheTests`` (tests/cache/tests.py of Django's source) on PyStorage stacks.

Linked into the distribution's ``tests/cache/`` as ``tests_pystorage.py`` and run by its
``runtests.py`` (``make test-django``): each stack gets Django's whole backend suite twice,
once through the sync API and once through the async one (every call of the suite made
by the ``a*`` twin, in an event loop: Django 5.2's tests_async.py tests only DummyCache).

What differs from Django's own backends, test by test, is overridden below with the
reason; docs/django.md lists them.
"""

import os
import tempfile
import uuid

import boto3
from asgiref.sync import async_to_sync
from django.core import cache as django_cache
from django.test import TestCase, override_settings

from pystorage.contrib.django import PyStorageCache
from pystorage.errors import ConfigurationError
from pystorage.testing import RedisServer, SeaweedS3Server

from . import tests as django_tests
from .tests import BaseCacheTests, caches_setting_for_tests

BACKEND = "pystorage.contrib.django.PyStorageCache"
FOLDER = tempfile.mkdtemp(prefix="pystorage-django-")


def _redis_url():
    """A Redis of the user's (PYSTORAGE_TEST_REDIS_URL), else one started here on loopback,
    stopped at exit (pystorage.testing); the runner's worker processes share it."""
    given = os.environ.get("PYSTORAGE_TEST_REDIS_URL")
    return given if given else RedisServer().start().url


REDIS_URL = _redis_url()


def _s3_url():
    """A bucket on a SeaweedFS started here on loopback (or PYSTORAGE_TEST_S3_ENDPOINT's
    server, with the usual AWS variables); the URL's storage finds the credentials in
    the environment, as boto3 does."""
    if not os.environ.get("PYSTORAGE_TEST_S3_ENDPOINT"):
        server = SeaweedS3Server().start()
        os.environ.update(
            PYSTORAGE_TEST_S3_ENDPOINT=server.endpoint_url,
            AWS_ACCESS_KEY_ID=server.access_key,
            AWS_SECRET_ACCESS_KEY=server.secret_key,
            AWS_DEFAULT_REGION=server.region,
        )
    endpoint = os.environ["PYSTORAGE_TEST_S3_ENDPOINT"]
    bucket = f"pystorage-django-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/{{name}}?endpoint_url={endpoint}"


S3_URL = _s3_url()


def location(stack, name):
    """A location of its own for each test class: the parallel runner's processes run
    classes side by side, and tearDown clears the whole storage."""
    if stack == "sqlite":
        return f"sqlite://{FOLDER}/{name}.db"
    if stack == "files":
        return f"file://{FOLDER}/{name}"
    if stack == "redis":
        return f"{REDIS_URL}?prefix=django-{name}:"
    if stack == "s3":
        return S3_URL.format(name=name)
    return "memory://"  # one memory per URL and process: the classes of one process share it


class PyStorageCacheTests(BaseCacheTests):
    """Django's backend suite; the subclasses name the stack."""

    stack = ""

    def _perform_cull_test(self, cull_cache_name, initial_count, final_count):
        # Replaced: Django's cull drops a CULL_FREQUENCY fraction of the entries when
        # full (29 or 19 of 49 stay); MAX_ENTRIES is PyStorage's limit=, which evicts the
        # least recently used entry per entry over it: the newest 30 of 49 stay.
        options = django_tests._caches_setting_base[cull_cache_name]["OPTIONS"]
        cull_cache = PyStorageCache(
            location(self.stack, f"{type(self).__name__}-{cull_cache_name}"),
            {"OPTIONS": options},
        )
        self.addCleanup(cull_cache.clear)
        for i in range(1, initial_count):
            cull_cache.set(f"cull{i}", "value", 1000)
        kept = [i for i in range(1, initial_count) if cull_cache.has_key(f"cull{i}")]
        self.assertEqual(kept, list(range(initial_count - 30, initial_count)))


class Awaited:
    """A cache whose API runs through its ``a*`` twins, each call in an event loop."""

    API = frozenset(
        {
            "get",
            "set",
            "add",
            "delete",
            "touch",
            "incr",
            "decr",
            "get_many",
            "set_many",
            "delete_many",
            "clear",
            "has_key",
            "get_or_set",
            "incr_version",
            "decr_version",
            "close",
        }
    )

    def __init__(self, cache):
        object.__setattr__(self, "_cache", cache)

    def __getattr__(self, name):
        if name in self.API:
            return async_to_sync(getattr(self._cache, "a" + name))
        return getattr(self._cache, name)

    def __setattr__(self, name, value):
        setattr(self._cache, name, value)

    def __contains__(self, key):
        return async_to_sync(self._cache.ahas_key)(key)


class AwaitedCaches:
    """``caches``, each cache as ``Awaited``."""

    def __getitem__(self, alias):
        return Awaited(django_cache.caches[alias])

    def __getattr__(self, name):
        return getattr(django_cache.caches, name)


class AsyncPyStorageCacheTests(PyStorageCacheTests):
    """The same suite, every cache call of it made by the async twin."""

    def setUp(self):
        super().setUp()
        for name, replacement in (
            ("cache", Awaited(django_cache.cache)),
            ("caches", AwaitedCaches()),
        ):
            original = getattr(django_tests, name)
            setattr(django_tests, name, replacement)
            # Cleanups run after tearDown, whose cache.clear() is then awaited too.
            self.addCleanup(setattr, django_tests, name, original)


class NativeAsyncPyStorageCacheTests(AsyncPyStorageCacheTests):
    """The async suite on a stack awaited natively (Redis): values are pickled on the
    event loop, where Django refuses database queries."""

    QUERY_ON_LOOP = (
        "an unevaluated QuerySet runs its query when pickled, which Django refuses on an "
        "event loop (SynchronousOnlyOperation): evaluate it (list(qs)) before aset()"
    )

    def test_cache_read_for_model_instance_with_deferred(self):
        self.skipTest(self.QUERY_ON_LOOP)

    def test_cache_write_for_model_instance_with_deferred(self):
        self.skipTest(self.QUERY_ON_LOOP)


class BoundlessPyStorageCacheTests(PyStorageCacheTests):
    """The suite on S3, which keeps no bound that every process sees: MAX_ENTRIES is
    refused there (safe by default) rather than kept per process."""

    def _perform_cull_test(self, cull_cache_name, initial_count, final_count):
        # Replaced: the cull caches cannot be built on S3.
        with self.assertRaisesMessage(ConfigurationError, "bound per process"):
            django_cache.caches[cull_cache_name].set("cull1", "value")

    def test_cull_delete_when_store_empty(self):
        self.skipTest("MAX_ENTRIES is refused on S3: the 'cull' cache cannot be built")


def stack_tests(stack, base):
    """A TestCase of ``base`` over ``stack``, its caches at a location of their own."""

    class Tests(base, TestCase):
        pass

    Tests.stack = stack
    kind = base.__name__.replace("Native", "").replace("Boundless", "")
    Tests.__name__ = Tests.__qualname__ = f"{stack.title()}{kind}"
    return override_settings(
        CACHES=caches_setting_for_tests(BACKEND=BACKEND, LOCATION=location(stack, Tests.__name__))
    )(Tests)


#: The classes of tests.py that use a cache through Django's code above the API
#: (middleware, cache_page, i18n keys, template responses) on LocMemCache: run on a
#: stack too, each alias at a location of its own.
ABOVE_THE_API = (
    "CacheUtils",
    "PrefixedCacheUtils",
    "CacheHEADTest",
    "CacheI18nTest",
    "PrefixedCacheI18nTest",
    "CacheMiddlewareTest",
    "TestWithTemplateResponse",
)


def on_stack(stack, name):
    """Django's test class ``name`` with its caches on ``stack`` (their other settings,
    KEY_PREFIX and TIMEOUT, kept). Taken from the module, not imported: an imported
    class would be collected here and run on LocMemCache again."""
    django_class = getattr(django_tests, name)
    tests = type(f"{stack.title()}{name}", (django_class,), {"__module__": __name__})
    caches = {
        alias: {
            **params,
            "BACKEND": BACKEND,
            "LOCATION": location(stack, f"{tests.__name__}-{alias}"),
        }
        for alias, params in django_class._overridden_settings["CACHES"].items()
    }
    tests = override_settings(CACHES=caches)(tests)
    assert tests._overridden_settings["CACHES"] == caches  # not the parent's LocMemCache
    return tests


for _stack in ("sqlite", "redis"):
    for _name in ABOVE_THE_API:
        _tests = on_stack(_stack, _name)
        globals()[_tests.__name__] = _tests

SqlitePyStorageCacheTests = stack_tests("sqlite", PyStorageCacheTests)
FilesPyStorageCacheTests = stack_tests("files", PyStorageCacheTests)
RedisPyStorageCacheTests = stack_tests("redis", PyStorageCacheTests)
MemoryPyStorageCacheTests = stack_tests("memory", PyStorageCacheTests)
S3PyStorageCacheTests = stack_tests("s3", BoundlessPyStorageCacheTests)
SqliteAsyncPyStorageCacheTests = stack_tests("sqlite", AsyncPyStorageCacheTests)
FilesAsyncPyStorageCacheTests = stack_tests("files", AsyncPyStorageCacheTests)
RedisAsyncPyStorageCacheTests = stack_tests("redis", NativeAsyncPyStorageCacheTests)
