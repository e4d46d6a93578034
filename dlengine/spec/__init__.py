"""Job requests: parse, validate, expand.

``load_job`` / ``parse_job`` turn a request into a frozen ``JobSpec`` or
raise ``SpecError`` naming the field; ``iter_objects`` expands a spec
lazily; ``spec_to_dict`` writes it back without secret headers.
"""

from __future__ import annotations

from dlengine.spec.durations import parse_duration, parse_size
from dlengine.spec.model import BucketRef, JobSpec, JobType, Limits, ObjectRef
from dlengine.spec.names import derive_name, normalize_link, validate_object_name
from dlengine.spec.parse import (
    dump_spec,
    iter_objects,
    load_job,
    load_spec,
    object_count,
    parse_job,
    range_pairs,
    spec_to_dict,
)
from dlengine.spec.template import MAX_TEMPLATE_OBJECTS, Template, parse_template

__all__ = [
    "MAX_TEMPLATE_OBJECTS",
    "BucketRef",
    "JobSpec",
    "JobType",
    "Limits",
    "ObjectRef",
    "Template",
    "derive_name",
    "dump_spec",
    "iter_objects",
    "load_job",
    "load_spec",
    "normalize_link",
    "object_count",
    "parse_duration",
    "parse_job",
    "parse_size",
    "parse_template",
    "range_pairs",
    "spec_to_dict",
    "validate_object_name",
]
