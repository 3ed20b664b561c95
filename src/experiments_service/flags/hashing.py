"""PostHog's `sha1_60_v1` bucketing hash and the identifier rules around it."""

from hashlib import sha1
from struct import Struct

# 2**60 - 1 as a float64 (it rounds to exactly 2**60): dividing by the float, not the int,
# gives PostHog's rounding (an exact rational division differs in the last bit for some inputs).
LONG_SCALE = float(0xFFFFFFFFFFFFFFF)

MAX_DISTINCT_ID_LENGTH = 200

# The first 8 digest bytes as a big-endian integer; `>> 4` keeps the top 60 bits (15 hex digits).
leading_u64 = Struct(">Q").unpack_from

HOLDOUT_PREFIX = "holdout-"
VARIANT_SALT = "variant"


def hash01(prefix: str, identifier: str, salt: str = "") -> float:
    """Map `prefix + identifier + salt` to [0, 1] from the top 60 bits of its SHA-1."""
    return (leading_u64(sha1((prefix + identifier + salt).encode("utf-8", "surrogatepass")).digest())[0] >> 4) / LONG_SCALE


def truncate_distinct_id(distinct_id: str) -> str:
    """Keep the first 200 Unicode scalar values, as the server does before hashing."""
    return distinct_id if len(distinct_id) <= MAX_DISTINCT_ID_LENGTH else distinct_id[:MAX_DISTINCT_ID_LENGTH]
