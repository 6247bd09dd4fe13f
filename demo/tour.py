"""A tour of every preset that exists, in the order of the README's use cases."""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path

import pystorage
from pystorage import Storage
from pystorage.codecs import MsgPack, Zstd
from pystorage.layers import LRU, Codec, Files, Tier
from pystorage.storage_provider import StorageProvider
from pystorage.testing import RedisServer, SeaweedS3Server


def show(label: str, value: object) -> None:
    print(f"  {label:<42} {value!r}")


def main() -> None:
    provider = StorageProvider()
    with tempfile.TemporaryDirectory(prefix="pystorage-tour-") as root:
        tempfile.tempdir = root  # presets that default to the temp dir write here

        print("STORAGE_JSON: one JSON file per key")
        storage = provider.create(StorageProvider.STORAGE_JSON)
        storage["some_key"] = {"text": "Hello World!"}
        show("storage['some_key']", storage["some_key"])
        show("file some_key.storage.json", Path(root, "some_key.storage.json").read_text())
        show("len(storage)", len(storage))
        del storage["some_key"]
        show("'some_key' in storage after del", "some_key" in storage)

        print("STORAGE_PICKLE and STORAGE_PICKLE_GZIP: any picklable object")
        # Pickle can run code: its presets default to a folder only this user enters.
        private = Path(root, f"pystorage-{os.getuid()}")
        pickles = provider.create(StorageProvider.STORAGE_PICKLE)
        pickles["point"] = (1, 2)
        show("pickles['point']", pickles["point"])
        packed = provider.create(StorageProvider.STORAGE_PICKLE_GZIP)
        packed["text"] = "x" * 10_000
        size = os.path.getsize(Path(private, "text.storage.pkl.gz"))
        show("10,000 chars gzip-pickled, bytes on disk", size)

        print("STORAGE_VOLATILE over STORAGE_PICKLE, expiration=1 (a real 1.1 s wait)")
        volatile = provider.create(StorageProvider.STORAGE_VOLATILE, storage=pickles, expiration=1)
        volatile["key"] = "value"
        show("volatile['key']", volatile["key"])
        time.sleep(1.1)
        show("'key' in volatile after 1.1 s", "key" in volatile)
        show("volatile.get('key') after 1.1 s", volatile.get("key"))
        show("key.storage.pkl still on disk", Path(private, "key.storage.pkl").exists())

        print("STORAGE_DISKLRU: at most `limit` files, least recently used removed first")
        disk = provider.create(StorageProvider.STORAGE_DISKLRU, limit=100)
        for i in range(150):
            disk[f"key.{i}"] = f"value.{i}"
        show("len after 150 writes with limit=100", len(disk))
        show("'key.49' in disk, 'key.50' in disk", ("key.49" in disk, "key.50" in disk))

        print("STORAGE_SQLITE: one row per key in an SQLite database (WAL mode)")
        rows = provider.create(StorageProvider.STORAGE_SQLITE, codec="json", limit=1000)
        rows["user:1"] = {"name": "Ada"}
        rows.set("session", "s3cr3t", ttl=60)
        show("rows['user:1'], len(rows)", (rows["user:1"], len(rows)))
        show("seconds left to 'session'", round(rows.get_with_ttl("session")[1] or 0))
        rows.close()

        print("STORAGE_MSGPACK and STORAGE_ZSTD")
        msgpacks = provider.create(StorageProvider.STORAGE_MSGPACK)
        msgpacks["list"] = [1, "two", 3.0]
        show("msgpacks['list']", msgpacks["list"])
        zstd = provider.create(StorageProvider.STORAGE_ZSTD)
        zstd["set"] = {1, 2, 3}
        show("zstd['set']", zstd["set"])

        print("STORAGE_MEMORY: a dict of this process (with codec=, values are copies)")
        plain = provider.create(StorageProvider.STORAGE_MEMORY)
        plain["any object"] = provider
        show("plain['any object'] is provider", plain["any object"] is provider)

        print("STORAGE_LRU: a bounded memory mapping, or a memory tier in front of a storage")
        lru = provider.create(StorageProvider.STORAGE_LRU, maxsize=2)
        for key in ("a", "b", "c"):
            lru[key] = key
        show("after writing a, b, c with maxsize=2", sorted(lru))
        tiered = provider.create(StorageProvider.STORAGE_LRU, maxsize=100, storage=pickles)
        show("tier over STORAGE_PICKLE reads 'point'", tiered["point"])

        print("Swapping the codec of a preset: STORAGE_JSON with codec='msgpack'")
        swapped = provider.create(StorageProvider.STORAGE_JSON, suffix="mp", codec="msgpack")
        swapped["k"] = {"a": 1}
        show("raw bytes of k.mp", Path(root, "k.mp").read_bytes())

        print("A custom stack: Tier(LRU(1000)), Codec(MsgPack() | Zstd()), Files(...)")
        custom = Storage(Tier(LRU(1000)), Codec(MsgPack() | Zstd()), Files(Path(root, "app")))
        custom.set_many({f"user:{i}": {"id": i} for i in range(3)})
        show("get_many of user:0, user:2, missing", custom.get_many(["user:0", "user:2", "x"]))

        print("Custom provider registration")
        registered = StorageProvider().register("my.service", lambda size: LRU(size))
        show("create('my.service', 5).maxsize", registered.create("my.service", 5).maxsize)

        print("STORAGE_REDIS and STORAGE_REDIS_JSON, on a redis-server started for the tour")
        with RedisServer() as server:
            import redis

            redis_client = redis.from_url(server.url)
            text = provider.create(StorageProvider.STORAGE_REDIS, redis_client=redis_client)
            text["key"] = "value"
            show("storage['key']", text["key"])
            as_json = provider.create(
                StorageProvider.STORAGE_REDIS_JSON, url=server.url, prefix="app:", expiration=60
            )
            as_json.set_many({"a": {"n": 1}, "b": [2]})
            show("get_many(['a', 'b']) (one MGET)", as_json.get_many(["a", "b"]))
            show("TTL of app:a in Redis, ms", redis_client.pttl("app:a"))
            show(f"redis-server started in {server.startup_seconds:.2f} s, keys", len(as_json))

        print("STORAGE_S3 on a SeaweedFS server started for the tour (a few seconds)")
        with SeaweedS3Server() as s3_server:
            import boto3

            credentials = {
                "endpoint_url": s3_server.endpoint_url,
                "aws_access_key_id": s3_server.access_key,
                "aws_secret_access_key": s3_server.secret_key,
            }
            client = boto3.client("s3", region_name=s3_server.region, **credentials)
            client.create_bucket(Bucket="my.bucket")
            page = Path(root, "test.html")
            page.write_bytes(b"<p>Hello PyStorage</p>")
            s3 = provider.create(
                StorageProvider.STORAGE_S3,
                bucket="my.bucket",
                folder="some/folder/",
                region=s3_server.region,
                **credentials,
            )
            with open(page, "rb") as fp:
                s3["test.html"] = fp.read()
            show("'test.html' in storage", "test.html" in s3)
            show("storage['test.html']", s3["test.html"])
            s3.set_many({f"part-{i}": bytes([i]) * 3 for i in range(20)})
            show("len after set_many of 20 (a thread pool)", len(s3))
            show("SeaweedFS start-up, seconds", round(s3_server.startup_seconds, 1))

        print("pystorage.open(url): a stack from configuration")
        cache = pystorage.open(f"file://{root}/urls?codec=json&limit=2&ttl=60&stats=1")
        for key in ("a", "b", "c"):
            cache[key] = {"key": key}
        show("layers", [type(layer).__name__ for layer in cache.layers])
        show("keys with limit=2, and stats()", (sorted(cache), cache.stats()))

        print("memoize: concurrent callers compute once")
        calls: list[int] = []

        @cache.memoize(ttl=60)
        def square(x: int) -> int:
            calls.append(x)
            return x * x

        threads = [threading.Thread(target=square, args=(12,)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        show("8 threads called square(12); computed", len(calls))


if __name__ == "__main__":
    main()
