"""The servers of one mutation run, kept up by a process of their own (see run.py).

``python tests/mutation/servers.py redis redis_cluster s3`` starts the servers named, prints
one line, a JSON object of the environment variables that tests/conftest.py reads to use
them, then keeps them up until its standard input ends (the run is over, or the process
that started it died) or it is interrupted, and stops them.

A process apart, because mutmut's workers are forks of the process that runs mutmut: had
that process imported ``pystorage`` to start the servers, every worker would inherit the
package as it is, and run the tests against it instead of the mutated copy mutmut makes.
"""

from __future__ import annotations

import contextlib
import json
import sys

from pystorage.testing import RedisClusterServer, RedisServer, SeaweedS3Server


def main(kinds: list[str]) -> None:
    with contextlib.ExitStack() as stack:
        variables: dict[str, str] = {}
        for kind in kinds:
            if kind == "redis":
                variables["PYSTORAGE_TEST_REDIS_URL"] = stack.enter_context(RedisServer()).url
            elif kind == "redis_cluster":
                cluster = stack.enter_context(RedisClusterServer())
                variables["PYSTORAGE_TEST_REDIS_CLUSTER_URL"] = cluster.url
            elif kind == "s3":
                s3 = stack.enter_context(SeaweedS3Server())
                variables |= {
                    "PYSTORAGE_TEST_S3_ENDPOINT": s3.endpoint_url,
                    "AWS_ACCESS_KEY_ID": s3.access_key,
                    "AWS_SECRET_ACCESS_KEY": s3.secret_key,
                    "AWS_DEFAULT_REGION": s3.region,
                }
            else:
                sys.exit(f"no server named {kind!r}: redis, redis_cluster or s3")
        print(json.dumps(variables), flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            sys.stdin.read()  # until the run ends (or its process dies): EOF


if __name__ == "__main__":
    main(sys.argv[1:])
