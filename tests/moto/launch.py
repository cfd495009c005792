"""Starts the moto server for Quarry's tests, on a free loopback port, with what moto lacks.

moto serves S3 (with S3 -> SQS event notifications), SQS (with redrive to a DLQ), DynamoDB and S3
Vectors, but not S3 Vectors' QueryVectors. This launcher adds QueryVectors to moto's own S3 Vectors
backend, following AWS's documented semantics (docs/AWS.md says why an emulator and not replay):

- exact nearest neighbours by the index's distance metric: cosine distance is 1 - cos(a, b),
  euclidean is the L2 distance; results nearest first; topK from 1 to 100;
- the filter is evaluated together with the search (a filtered top-K stays full): implicit $eq,
  $eq $ne $gt $gte $lt $lte $in $nin $exists $and $or; $eq on a list value matches any element;
  a filter on a non-filterable key, or an unknown operator, is a ValidationException;
- returnMetadata / returnDistance decide what each result carries.

The search is exact, over a numpy matrix of the index kept until its next change (numpy is in the
test tools' environment with moto), so that an index of 100,000 vectors answers in milliseconds, as
benchmarks of the search function need. GetVectors looks each key up rather than scanning the index.

For the fault tests it fails a share of the data-plane requests to resources named "...faultsNN-..."
(below). It also makes each DynamoDB request atomic, as DynamoDB's are: moto serves requests on many
threads and applies an update as read, change, write, so two concurrent `ADD`s on one item (eight
workers moving a batch's counters, reserving one budget) could lose one. Requests to DynamoDB are
serialised here; every other service is served as moto serves it.

It prints the port on its first line of output and serves until its standard input closes, so the
test process that started it takes it down when it exits, however it exits.
"""

import json
import logging
import random
import re
import sys
import threading

import numpy as np

from moto.core.responses import ActionResult
from moto.dynamodb.responses import DynamoHandler
from moto.s3.responses import S3Response
from moto.s3vectors import urls as s3v_urls
from moto.s3vectors.exceptions import ValidationError
from moto.s3vectors.models import S3VectorsBackend
from moto.s3vectors.responses import S3VectorsResponse
from moto.server import ThreadedMotoServer

MAX_TOP_K = 100
MAX_PUT = 500
FILTERABLE_LIMIT = 2048
METADATA_LIMIT = 40 * 1024
COMPARISONS = {"$gt", "$gte", "$lt", "$lte"}


def _values(value):
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _equals(a, b):
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b


def _op(field, op, arg, metadata, non_filterable):
    if field in non_filterable:
        raise ValidationError(f"Invalid filter: {field} is a non-filterable metadata key")
    values = _values(metadata.get(field))
    if op == "$eq":
        return any(_equals(v, arg) for v in values)
    if op == "$ne":
        return not any(_equals(v, arg) for v in values)
    if op in ("$in", "$nin"):
        if not isinstance(arg, list) or not arg:
            raise ValidationError(f"Invalid filter: {op} takes a non-empty list")
        hit = any(_equals(v, a) for v in values for a in arg)
        return hit if op == "$in" else not hit
    if op in COMPARISONS:
        if isinstance(arg, bool) or not isinstance(arg, (int, float)):
            raise ValidationError(f"Invalid filter: {op} takes a number")
        nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        test = {
            "$gt": lambda v: v > arg,
            "$gte": lambda v: v >= arg,
            "$lt": lambda v: v < arg,
            "$lte": lambda v: v <= arg,
        }[op]
        return any(test(v) for v in nums)
    if op == "$exists":
        if not isinstance(arg, bool):
            raise ValidationError("Invalid filter: $exists takes a boolean")
        return bool(values) == arg
    raise ValidationError(f"Invalid filter: unsupported operator {op}")


def _matches(flt, metadata, non_filterable):
    if not isinstance(flt, dict) or not flt:
        raise ValidationError("Invalid filter: expected a non-empty object")
    for key, cond in flt.items():
        if key in ("$and", "$or"):
            if not isinstance(cond, list) or not cond:
                raise ValidationError(f"Invalid filter: {key} takes a non-empty list")
            parts = [_matches(c, metadata, non_filterable) for c in cond]
            ok = all(parts) if key == "$and" else any(parts)
        elif key.startswith("$"):
            raise ValidationError(f"Invalid filter: unsupported operator {key}")
        elif isinstance(cond, dict):
            ok = all(_op(key, op, arg, metadata, non_filterable) for op, arg in cond.items())
        else:
            ok = _op(key, "$eq", cond, metadata, non_filterable)
        if not ok:
            return False
    return True


class _Versioned(dict):
    """An index's vectors, counting their changes: QueryVectors keeps a matrix of them until the next."""

    version = 0

    def __setitem__(self, key, value):
        self.version += 1
        super().__setitem__(key, value)

    def __delitem__(self, key):
        self.version += 1
        super().__delitem__(key)

    def pop(self, *args):
        self.version += 1
        return super().pop(*args)

    def clear(self):
        self.version += 1
        super().clear()


def _matrix(index):
    """The index's vectors as one float64 matrix, rebuilt after a change. A Python loop over 100,000
    vectors took seconds per query; numpy answers the same exact search in milliseconds."""
    vectors = index.vectors
    version = getattr(vectors, "version", None)
    cached = getattr(index, "_quarry_matrix", None)
    if cached is not None and version is not None and cached[0] == version:
        return cached
    items = list(vectors.values())
    rows = [v.data.get("float32") if isinstance(v.data, dict) else v.data for v in items]
    data = np.array(rows, dtype=np.float64).reshape(len(items), index.dimension)
    cached = (version, items, data, np.linalg.norm(data, axis=1))
    index._quarry_matrix = cached
    return cached


def _distances(metric, data, norms, query):
    q = np.asarray(query, dtype=np.float64)
    if metric == "euclidean":
        return np.sqrt(np.maximum(norms * norms - 2.0 * (data @ q) + q @ q, 0.0))
    qn = float(np.linalg.norm(q))
    with np.errstate(divide="ignore", invalid="ignore"):
        dist = 1.0 - (data @ q) / (norms * qn)
    # A zero vector has no direction: as far as can be from everything.
    dist[(norms == 0) | (qn == 0)] = 1.0
    return dist


def _metadata(vector):
    metadata = vector.metadata or {}
    return json.loads(metadata) if isinstance(metadata, str) else metadata


def query_vectors(self):
    bucket = self._get_param("vectorBucketName")
    index_name = self._get_param("indexName")
    index_arn = self._get_param("indexArn")
    self._validate_index_params(index_arn, index_name, bucket)
    top_k = self._get_param("topK")
    if not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
        raise ValidationError(f"topK must be between 1 and {MAX_TOP_K}")
    query = (self._get_param("queryVector") or {}).get("float32")
    flt = self._get_param("filter")
    return_metadata = self._get_bool_param("returnMetadata", False)
    return_distance = self._get_bool_param("returnDistance", False)
    index = self.s3vectors_backend.get_index(bucket, index_name=index_name, index_arn=index_arn)
    if not query or len(query) != index.dimension:
        raise ValidationError(
            f"Query vector has dimension {len(query or [])}, the index has {index.dimension}"
        )
    non_filterable = set(
        (getattr(index, "metadata_configuration", None) or {}).get("nonFilterableMetadataKeys") or []
    )
    _, items, data, norms = _matrix(index)
    dist = _distances(index.distance_metric, data, norms, query)
    rows = np.arange(len(items))
    if flt is not None:
        rows = np.array(
            [i for i, v in enumerate(items) if _matches(flt, _metadata(v), non_filterable)], dtype=np.int64
        )
    if len(rows) > top_k:
        # The k nearest, and every row tied with the k-th, ordered below by distance then key.
        kth = np.partition(dist[rows], top_k - 1)[top_k - 1]
        rows = rows[dist[rows] <= kth]
    scored = sorted(((float(dist[i]), items[i].key, items[i]) for i in rows), key=lambda t: (t[0], t[1]))
    out = []
    for distance, key, vector in scored[:top_k]:
        item = {"key": key}
        if return_metadata:
            item["metadata"] = _metadata(vector)
        if return_distance:
            item["distance"] = distance
        out.append(item)
    return ActionResult({"vectors": out, "distanceMetric": index.distance_metric})


def get_vectors(self, vector_bucket_name, index_name, index_arn, keys):
    """moto scans the whole index for each key asked (a publish of 1,000 documents took seconds at
    100,000 chunks); a lookup per key answers the same."""
    index = self.get_index(vector_bucket_name, index_name=index_name, index_arn=index_arn)
    return [index.vectors[k] for k in dict.fromkeys(keys) if k in index.vectors]


_create_index = S3VectorsResponse.create_index
_put_vectors = S3VectorsResponse.put_vectors


def create_index(self):
    """moto drops metadataConfiguration; QueryVectors and PutVectors need it."""
    result = _create_index(self)
    config = self._get_param("metadataConfiguration") or {}
    index = self.s3vectors_backend.get_index(
        self._get_param("vectorBucketName"),
        index_name=self._get_param("indexName"),
        index_arn=None,
    )
    index.metadata_configuration = config
    index.vectors = _Versioned(index.vectors)
    return result


def put_vectors(self):
    """AWS refuses a vector whose filterable metadata passes 2 KB, or whose metadata passes 40 KB."""
    index = self.s3vectors_backend.get_index(
        self._get_param("vectorBucketName"),
        index_name=self._get_param("indexName"),
        index_arn=self._get_param("indexArn"),
    )
    non_filterable = set(
        (getattr(index, "metadata_configuration", None) or {}).get("nonFilterableMetadataKeys") or []
    )
    vectors = self._get_param("vectors") or []
    if not 1 <= len(vectors) <= MAX_PUT:
        raise ValidationError(f"PutVectors takes 1 to {MAX_PUT} vectors, got {len(vectors)}")
    for vector in vectors:
        metadata = vector.get("metadata") or {}
        filterable = {k: v for k, v in metadata.items() if k not in non_filterable}
        if len(json.dumps(filterable, separators=(",", ":")).encode()) > FILTERABLE_LIMIT:
            raise ValidationError(f"Filterable metadata of {vector.get('key')} exceeds {FILTERABLE_LIMIT} bytes")
        if len(json.dumps(metadata, separators=(",", ":")).encode()) > METADATA_LIMIT:
            raise ValidationError(f"Metadata of {vector.get('key')} exceeds {METADATA_LIMIT} bytes")
    return _put_vectors(self)


# Injected faults, for the fault tests: a data-plane request to DynamoDB or S3 Vectors whose body
# names a resource called "...faultsNN-..." fails NN % of the time, alternately throttled and with a
# 5xx, in each service's own error format (the SDK's retries and Quarry's see what AWS sends).
# Other tests' resources never match, so they share the server unaffected.
_FAULTS = re.compile(r"faults(\d+)-")
_FAULT_RNG = random.Random(20261206)
_FAULT_LOCK = threading.Lock()
_DDB_DATA = {
    "GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan", "BatchGetItem", "BatchWriteItem",
    "TransactGetItems", "TransactWriteItems",
}
_S3V_DATA = {"PutVectors", "GetVectors", "QueryVectors", "DeleteVectors", "ListVectors"}


def _fault(body):
    match = _FAULTS.search(body if isinstance(body, str) else "")
    if not match:
        return None
    with _FAULT_LOCK:
        roll = _FAULT_RNG.random() * 100
        throttle = _FAULT_RNG.random() < 0.5
    return throttle if roll < int(match.group(1)) else None


_DYNAMODB = threading.Lock()
_dynamodb_call_action = DynamoHandler.call_action


def dynamodb_call_action(self):
    if self._get_action() in _DDB_DATA:
        throttle = _fault(self.body)
        if throttle is not None:
            kind, status = ("ProvisionedThroughputExceededException", 400) if throttle else ("InternalServerError", 500)
            body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{kind}", "message": "injected by the test launcher"})
            return status, {"Content-Type": "application/x-amz-json-1.0"}, body
    with _DYNAMODB:
        return _dynamodb_call_action(self)


_s3v_call_action = S3VectorsResponse.call_action


def s3v_call_action(self):
    if self._get_action() in _S3V_DATA:
        throttle = _fault(self.body)
        if throttle is not None:
            kind, status = ("TooManyRequestsException", 429) if throttle else ("ServiceUnavailableException", 503)
            headers = {"Content-Type": "application/json", "x-amzn-ErrorType": kind}
            return status, headers, json.dumps({"message": "injected by the test launcher"})
    return _s3v_call_action(self)


DynamoHandler.call_action = dynamodb_call_action

# AWS makes a conditional PutObject (If-Match, If-None-Match) atomic; moto checks the condition,
# then writes, so two writers racing to replace the keyword manifest could both win. One at a time.
_S3_PUT = threading.Lock()
_s3_put_object = S3Response.put_object


def s3_put_object(self):
    with _S3_PUT:
        return _s3_put_object(self)


S3Response.put_object = s3_put_object
S3VectorsResponse.create_index = create_index
S3VectorsResponse.put_vectors = put_vectors
S3VectorsResponse.query_vectors = query_vectors
S3VectorsResponse.call_action = s3v_call_action
S3VectorsBackend.get_vectors = get_vectors
s3v_urls.url_paths["{0}/QueryVectors$"] = S3VectorsResponse.dispatch


def main():
    # Request lines would bury the test output.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    print(port, flush=True)
    # Serve until the parent closes our stdin (it exited, or dropped its handle).
    threading.Thread(target=lambda: sys.stdin.read(), daemon=False).run()
    server.stop()


if __name__ == "__main__":
    main()
