"""Django's own cache suite against pystorage.contrib.django: ``make test-django`` links
these modules into the tests of Django's source distribution and runs them with its
``runtests.py`` (tools/test_django.py)."""
