"""Schemathesis hooks for fuzzing Quarry's API from its own /openapi.json (cli/tests/api_fuzz.rs).

Two values are valid only when the server made them, so no generator can find valid ones: a
search's `cursor` is sealed by the server for one query (only a `next_cursor` it returned opens),
and a `filter` is a small language of its own, validated by its parser (and tested there:
quarry_core::filter). Generated cases carry neither; every other field is fuzzed as declared.
"""

import schemathesis


@schemathesis.hook
def map_body(ctx, body):
    if isinstance(body, dict) and ctx.operation.path == "/v1/search":
        body.pop("cursor", None)
        body.pop("filter", None)
    return body
