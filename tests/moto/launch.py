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

It also makes each DynamoDB request atomic, as DynamoDB's are: moto serves requests on many
threads and applies an update as read, change, write, so two concurrent `ADD`s on one item (eight
workers moving a batch's counters, reserving one budget) could lose one. Requests to DynamoDB are
serialised here; every other service is served as moto serves it.

It prints the port on its first line of output and serves until its standard input closes, so the
test process that started it takes it down when it exits, however it exits.
"""

import json
import logging
import math
import sys
import threading

from moto.core.responses import ActionResult
from moto.dynamodb.responses import DynamoHandler
from moto.s3.responses import S3Response
from moto.s3vectors import urls as s3v_urls
from moto.s3vectors.exceptions import ValidationError
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


def _distance(metric, a, b):
    if metric == "euclidean":
        return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))
    dot = sum(x * y for x, y in zip(a, b))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    if na == 0 or nb == 0:
        return 1.0
    return 1.0 - dot / (na * nb)


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
    scored = []
    for vector in list(index.vectors.values()):
        metadata = vector.metadata or {}
        if isinstance(metadata, str):
            metadata = json.loads(metadata)
        if flt is not None and not _matches(flt, metadata, non_filterable):
            continue
        data = vector.data.get("float32") if isinstance(vector.data, dict) else vector.data
        scored.append((_distance(index.distance_metric, query, data), vector.key, metadata))
    scored.sort(key=lambda t: (t[0], t[1]))
    out = []
    for dist, key, metadata in scored[:top_k]:
        item = {"key": key}
        if return_metadata:
            item["metadata"] = metadata
        if return_distance:
            item["distance"] = dist
        out.append(item)
    return ActionResult({"vectors": out, "distanceMetric": index.distance_metric})


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


_DYNAMODB = threading.Lock()
_dynamodb_call_action = DynamoHandler.call_action


def dynamodb_call_action(self):
    with _DYNAMODB:
        return _dynamodb_call_action(self)


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
