"""Serializers, compression and decoding limits (issue 13): ``serializers.register`` (kombu's
arguments), kombu's compression methods and header values, bounded decompression, the JSON depth
limit, RESULT_COMPRESSION in Celery's format, and the worker's refusals on every broker."""

from __future__ import annotations

import json
import logging
import random
import uuid
import zlib

import pytest

from django_taskq import compression, message, nesting, serializers, states, task
from django_taskq.brokers import get_broker
from django_taskq.conf import get_settings
from django_taskq.exceptions import ConfigurationError, ContentDisallowed, SerializationError
from django_taskq.outcome import Outcome
from django_taskq.results import backend_from_url
from django_taskq.results.base import COMPRESSED_MAGIC, ResultBackend
from tests.helpers import dead_letters, drain, envelope
from tests.testapp import tasks

memory_only = pytest.mark.parametrize("broker_kind", ["memory"])
#: Every method kombu has, by each of its names; zstd and brotli when their packages import.
METHODS = ["zlib", "gzip", "bzip2", "lzma", "xz", "zstd", "brotli"]
KOMBU_HEADERS = {"zlib": "application/x-gzip", "gzip": "application/x-gzip",
                 "bzip2": "application/x-bz2", "lzma": "application/x-lzma",
                 "xz": "application/x-lzma", "zstd": "application/zstd",
                 "brotli": "application/x-brotli"}


def nested(depth):
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def installed(name):
    try:
        compression.check(name)
    except SerializationError as exc:
        pytest.skip(str(exc))
    return name


class Spy:
    """A project's own codec, in kombu's form: the encoder returns text, the decoder gets bytes."""

    content_type = "application/x-spy"

    def __init__(self):
        self.decoded = []

    def encode(self, value):
        return json.dumps({"spy": value})

    def decode(self, data):
        self.decoded.append(data)
        return json.loads(data)["spy"]


@pytest.fixture
def spy():
    codec = Spy()
    serializers.register("spy", codec.encode, codec.decode, codec.content_type)
    yield codec
    serializers.unregister("spy")


@task(name="codecs.spied", serializer="spy")
def spied(x):
    return x


@task(name="codecs.packed", compression="bzip2")
def packed(x):
    return x


# -- register -----------------------------------------------------------------------------

def test_a_registered_codec_round_trips_and_is_refused_unless_accepted(spy):
    data, content_type, encoding = serializers.dumps({"a": [1]}, "spy")
    assert (content_type, encoding) == ("application/x-spy", "utf-8")
    assert isinstance(data, bytes)
    assert serializers.loads(data, content_type, encoding, accept=("spy",)) == {"a": [1]}
    assert serializers.loads(data, content_type, encoding, accept=("application/x-spy",)) == {
        "a": [1]}
    assert spy.decoded == [data, data]  # given the bytes, as kombu gives them
    with pytest.raises(ContentDisallowed, match=r"spy content .*ACCEPT_CONTENT allows json"):
        serializers.loads(data, content_type, encoding, accept=("json",))
    assert len(spy.decoded) == 2  # refused before decoding
    assert "spy" in serializers.NAMES


@memory_only
def test_a_registered_codec_per_task_per_call_and_globally(configured, settings, spy):
    def sent_with(result):
        [delivery] = get_broker().reserve(["default"], max_messages=1, lease=10, worker="t")
        assert delivery.envelope.message_id == result.id
        return delivery.envelope

    assert sent_with(spied.delay(1)).content_type == Spy.content_type
    by_call = sent_with(tasks.add.apply_async((1, 2), serializer="spy"))
    assert by_call.content_type == Spy.content_type
    assert message.decode(by_call, ("spy",)).args == (1, 2)
    settings.TASKQ = {**settings.TASKQ, "TASK_SERIALIZER": "spy"}
    assert sent_with(tasks.add.delay(1, 2)).content_type == Spy.content_type
    with pytest.raises(ContentDisallowed, match="ACCEPT_CONTENT"):
        message.decode(by_call)  # the default ACCEPT_CONTENT: json only


def test_register_errors_name_the_fix(spy):
    with pytest.raises(ValueError, match=r"already registered with content type "
                                         r"'application/x-spy'.*unregister\('spy'\)"):
        serializers.register("spy", spy.encode, spy.decode, "application/x-other")
    with pytest.raises(ValueError, match="belongs to serializer 'json'"):
        serializers.register("myjson", spy.encode, spy.decode, "application/json")
    with pytest.raises(TypeError, match="MIME type"):
        serializers.register("mine", spy.encode, spy.decode, "mine")
    with pytest.raises(TypeError, match="callable"):
        serializers.register("mine", "json.dumps", None, "application/x-mine")
    with pytest.raises(TypeError, match="name"):
        serializers.register("", spy.encode, spy.decode, "application/x-mine")
    with pytest.raises(ValueError, match="No serializer 'mine'"):
        serializers.unregister("mine")
    with pytest.raises(ValueError, match="built in .*ACCEPT_CONTENT"):
        serializers.unregister("json")
    # The same name and content type again replaces it (a module imported twice).
    serializers.register("spy", spy.encode, spy.decode, Spy.content_type)


def test_a_replaced_builtin_comes_back_when_unregistered():
    serializers.register("json", lambda v: "[1]", lambda d: "mine", "application/json")
    try:
        assert serializers.loads(b"[2]", "application/json") == "mine"
    finally:
        serializers.unregister("json")
    assert serializers.loads(b"[2]", "application/json") == [2]
    assert serializers.get("json").encode is not None


# -- compression --------------------------------------------------------------------------

@pytest.mark.parametrize("name", METHODS)
def test_each_method_uses_kombus_header_and_reads_kombus_bytes(name):
    kombu = pytest.importorskip("kombu.compression")
    installed(name)
    data = json.dumps([[1, "x" * 500], {}, {}]).encode()
    body, header = compression.compress(name, data)
    assert header == KOMBU_HEADERS[name] and body != data
    assert compression.decompress(header, body, len(data)) == data
    if header in kombu.encoders():
        assert kombu.decompress(body, header) == data  # a Celery worker reads ours
        theirs, their_header = kombu.compress(data, name)
        assert their_header == header
        assert compression.decompress(their_header, theirs, len(data)) == data


@pytest.mark.parametrize("name", METHODS)
def test_a_decompression_bomb_is_refused_naming_message_max_bytes(name):
    installed(name)
    body, header = compression.compress(name, b"\0" * 200_000)
    with pytest.raises(SerializationError, match=r"more than MESSAGE_MAX_BYTES \(10000 bytes\)"):
        compression.decompress(header, body, 10_000)
    with pytest.raises(SerializationError, match="ends early"):
        compression.decompress(header, body[:len(body) // 2], 10**6)


def test_a_large_zlib_bomb_is_refused_at_the_default_limit():
    bomb = zlib.compress(b"\0" * 64 * 1024 * 1024, 9)  # 64 MiB in about 64 KiB
    with pytest.raises(SerializationError, match="MESSAGE_MAX_BYTES"):
        compression.decompress("application/x-gzip", bomb, get_settings().MESSAGE_MAX_BYTES)


def test_unknown_and_uninstalled_methods_are_clear_errors(monkeypatch):
    with pytest.raises(SerializationError, match=r"Unknown compression 'snappy'; known: zlib "
                                                 r"\(gzip\), bzip2 \(bzip\), lzma \(xz\)"):
        compression.compress("snappy", b"x")

    def missing():
        raise ImportError("No module named 'brotli'")

    gone = compression.Method("brotli", "application/x-brotli", (), missing, "brotli>=1.2")
    monkeypatch.setitem(compression._BY_NAME, "brotli", gone)
    with pytest.raises(SerializationError, match=r"pip install 'brotli>=1.2'"):
        compression.check("brotli")


@memory_only
def test_compression_per_call_per_task_and_globally(configured, settings):
    def sent(result):
        [delivery] = get_broker().reserve(["default"], max_messages=1, lease=10, worker="t")
        assert delivery.envelope.message_id == result.id
        return delivery.envelope

    cases = [(tasks.add.apply_async((1, 2), compression="zlib"), "application/x-gzip"),
             (packed.delay(5), "application/x-bz2")]
    for result, header in cases:
        sent_envelope = sent(result)
        assert sent_envelope.headers["compression"] == header
        assert sent_envelope.content_type == "application/json"  # the serializer's, as kombu
        assert json.loads(compression.decompress(header, sent_envelope.body, 10**6))[0]
        assert message.decode(sent_envelope).args in ((1, 2), (5,))
    settings.TASKQ = {**settings.TASKQ, "TASK_COMPRESSION": "xz"}
    assert sent(tasks.add.delay(1, 2)).headers["compression"] == "application/x-lzma"
    plain = sent(tasks.add.apply_async((1, 2), compression=None, serializer="json"))
    assert plain.headers["compression"] == "application/x-lzma"  # None: not given


def test_a_retry_with_new_arguments_is_compressed_the_same_way():
    original = envelope(args=(1, 2), compression="bzip2")
    retried = message.retry_envelope(original, eta=None, args=(7, 8))
    assert retried.headers["compression"] == "application/x-bz2"
    assert message.decode(retried).args == (7, 8)
    assert message.decode_body(retried, ("json",))[0] == [7, 8]


def test_task_compression_is_checked_with_the_settings(settings):
    settings.TASKQ = {**settings.TASKQ, "TASK_COMPRESSION": "snappy"}
    with pytest.raises(ConfigurationError, match=r"TASK_COMPRESSION must be None or an "
                                                 r"installed compression method \(Unknown"):
        get_settings()


# -- the depth limit ----------------------------------------------------------------------

def test_json_deeper_than_the_limit_is_refused_before_it_is_parsed(settings):
    settings.TASKQ = {**settings.TASKQ, "JSON_MAX_DEPTH": 5}
    at_limit, deeper = b"[[[[{}]]]]", b"[[[[[[]]]]]]"
    assert serializers.loads(at_limit, "application/json") == [[[[{}]]]]
    with pytest.raises(SerializationError, match=r"deeper than JSON_MAX_DEPTH \(5 levels"):
        serializers.loads(deeper, "application/json")
    texts = json.dumps({"a": ["[[[[[[[[{{{{", "\\\"[[[[[["]}).encode()  # brackets in strings
    assert serializers.loads(texts, "application/json")["a"][0] == "[[[[[[[[{{{{"
    # Far past the parser's recursion limit: refused by the scan, never a RecursionError.
    hostile = b'[{"a":' * 200_000 + b"1" + b"}]" * 200_000
    with pytest.raises(SerializationError, match="JSON_MAX_DEPTH"):
        serializers.loads(hostile, "application/json")


def _random_document(rnd, level=0):
    """Lists and objects whose strings are full of brackets, quotes and backslashes."""
    def text():
        return "".join(rnd.choice('[]{}"\\ab/\u00e9') for _ in range(rnd.randint(0, 5)))

    roll = rnd.random()
    if level > 12 or roll < 0.3:
        return rnd.choice([1, None, text()])
    if roll < 0.65:
        return [_random_document(rnd, level + 1) for _ in range(rnd.randint(0, 3))]
    return {text(): _random_document(rnd, level + 1) for _ in range(rnd.randint(0, 3))}


def _depth(value):
    if not isinstance(value, (list, dict)):
        return 0
    children = value.values() if isinstance(value, dict) else value
    return 1 + max((_depth(child) for child in children), default=0)


def test_the_json_scan_agrees_with_the_real_depth_of_random_documents():
    """Limits on both sides of each depth, through the quick rounds and the sweep alike."""
    rnd = random.Random(13)
    for _ in range(1500):
        value = _random_document(rnd)
        data, real = json.dumps(value, ensure_ascii=rnd.random() < 0.5).encode(), _depth(value)
        for limit in {1, max(real - 1, 1), real, real + 1, 9}:
            try:
                nesting.check_json(data, limit)
            except SerializationError:
                assert real > limit, (data, limit)
            else:
                assert real <= limit, (data, limit)


@pytest.mark.parametrize("name", ["yaml", "msgpack"])
def test_yaml_and_msgpack_deeper_than_the_limit_are_refused(settings, name):
    settings.TASKQ = {**settings.TASKQ, "JSON_MAX_DEPTH": 3}
    data, content_type, encoding = serializers.dumps([[[1]]], name)
    assert serializers.loads(data, content_type, encoding, accept=(name,)) == [[[1]]]
    data, content_type, encoding = serializers.dumps([[[[1]]]], name)
    with pytest.raises(SerializationError, match="JSON_MAX_DEPTH"):
        serializers.loads(data, content_type, encoding, accept=(name,))


def test_a_stored_result_deeper_than_the_limit_is_refused(settings):
    settings.TASKQ = {**settings.TASKQ, "JSON_MAX_DEPTH": 3}
    backend = backend_from_url("memory://depth")
    assert isinstance(backend, ResultBackend)
    with pytest.raises(SerializationError, match="JSON_MAX_DEPTH"):
        backend.decode(b"[[[[1]]]]", "application/json", "utf-8")


# -- the worker, on every broker ----------------------------------------------------------

def test_content_not_accepted_is_dead_lettered_and_never_decoded(configured, make_worker, spy,
                                                                 monkeypatch):
    refused = spied.apply_async((1,), compression="zlib")
    good = tasks.add.delay(1, 2)
    spy.decoded.clear()
    inflated = []
    monkeypatch.setattr(compression, "decompress",
                        lambda *args: inflated.append(args) or pytest.fail("decompressed"))
    drain(make_worker(), good)
    assert good.get(timeout=5) == 3
    [(dead_id, reason)] = dead_letters(get_broker())
    assert dead_id == refused.id
    assert "spy content (application/x-spy)" in reason and "ACCEPT_CONTENT allows json" in reason
    assert spy.decoded == [] and inflated == []


def test_compressed_messages_run_and_bombs_and_deep_ones_are_dead_lettered(
        configured, make_worker, settings, spy):
    settings.TASKQ = {**settings.TASKQ, "ACCEPT_CONTENT": ["json", "spy"],
                      "MESSAGE_MAX_BYTES": 100_000, "JSON_MAX_DEPTH": 20}
    broker = get_broker()
    bomb = envelope(task="tests.echo", args=("a" * 1_000_000,), compression="zlib")
    deep = envelope(task="tests.echo", args=(nested(25),))
    for bad in (bomb, deep):
        broker.enqueue(bad)
    zipped = tasks.add.apply_async((2, 3), compression="zlib")
    both = tasks.add.apply_async((4, 5), serializer="spy", compression="lzma")
    worker = make_worker()
    for result, value in ((zipped, 5), (both, 9)):
        drain(worker, result)
        assert result.state == states.SUCCESS and result.get(timeout=5) == value
    reasons = dict(dead_letters(broker))
    assert "MESSAGE_MAX_BYTES (100000 bytes)" in reasons[bomb.message_id]
    assert "JSON_MAX_DEPTH (20 levels" in reasons[deep.message_id]


# -- the pickle warning -------------------------------------------------------------------

@memory_only
@pytest.mark.parametrize("accept", [["json", "pickle"], ["application/x-python-serialize"]])
def test_a_worker_accepting_pickle_warns_when_it_starts(configured, settings, make_worker,
                                                        caplog, accept):
    from django_taskq.worker.banner import banner

    settings.TASKQ = {**settings.TASKQ, "ACCEPT_CONTENT": accept}
    with caplog.at_level(logging.WARNING, logger="django_taskq"):
        text = banner(make_worker())
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    for said in (record.getMessage(), text):
        assert "can write to the broker can run code in this worker" in said
        assert "SIGNING_KEYS" in said


@memory_only
def test_a_worker_without_pickle_says_nothing_of_it(configured, make_worker, caplog):
    from django_taskq.worker.banner import banner

    with caplog.at_level(logging.WARNING, logger="django_taskq"):
        text = banner(make_worker())
    assert "pickle" not in text and not caplog.records


# -- RESULT_COMPRESSION -------------------------------------------------------------------

def _outcome(value):
    payload, content_type, encoding = serializers.dumps(value)
    return Outcome(task_id=str(uuid.uuid4()), task_name="t", state=states.SUCCESS,
                   payload=payload, content_type=content_type, content_encoding=encoding)


def test_redis_results_are_compressed_in_celerys_format(redis_url, settings):
    import redis
    from celery.backends.base import compress_payload, decompress_payload

    settings.TASKQ = {**settings.TASKQ, "RESULT_BACKEND": redis_url,
                      "RESULT_COMPRESSION": "gzip"}
    backend = backend_from_url(redis_url)
    outcome = _outcome({"rows": ["x" * 100] * 50})
    backend.store(outcome)
    client = redis.Redis.from_url(redis_url)
    stored = client.get(f"celery-task-meta-{outcome.task_id}")
    assert stored.startswith(COMPRESSED_MAGIC + b"application/x-gzip\x00")
    assert json.loads(decompress_payload(stored))["result"]["rows"][0] == "x" * 100  # Celery's
    assert backend.get(outcome.task_id).result == {"rows": ["x" * 100] * 50}
    celerys = compress_payload(json.dumps({"status": "SUCCESS", "result": 7, "traceback": None,
                                           "children": [], "task_id": "c"}).encode(), "bzip2")
    client.set("celery-task-meta-c", celerys)
    assert backend.get("c").result == 7
    client.set("celery-task-meta-bomb", COMPRESSED_MAGIC + b"application/x-gzip\x00"
               + zlib.compress(b" " * (get_settings().MESSAGE_MAX_BYTES + 1)))
    with pytest.raises(SerializationError, match="MESSAGE_MAX_BYTES"):
        backend.get("bomb")
    client.close()
    backend.close()


def test_a_result_over_message_max_bytes_is_stored_uncompressed(redis_url, settings):
    settings.TASKQ = {**settings.TASKQ, "RESULT_COMPRESSION": "zlib", "MESSAGE_MAX_BYTES": 1000}
    backend = backend_from_url(redis_url)
    assert backend.compress_payload(b"x" * 900).startswith(COMPRESSED_MAGIC)
    assert backend.compress_payload(b"x" * 1001) == b"x" * 1001  # readable, whatever its size
    backend.close()


def test_the_database_result_backend_refuses_result_compression(settings):
    settings.TASKQ = {**settings.TASKQ, "RESULT_COMPRESSION": "zlib"}
    with pytest.raises(ConfigurationError, match=r"RESULT_COMPRESSION \('zlib'\) is not "
                                                 r"available with the database result backend"):
        backend_from_url("db://default")
