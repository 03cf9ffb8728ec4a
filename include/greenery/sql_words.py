"""The words PostgreSQL reserves: a schema named one cannot be written unquoted, as the models write theirs."""

# The words PostgreSQL 16 refuses before a dot (`select * from order.addresses` is a syntax error): its reserved
# keywords and those that may not name a column (pg_get_keywords(), each tried as a schema qualifier).
_RESERVED = """
all analyse analyze and any array as asc asymmetric authorization binary both case cast check collate collation
column concurrently constraint create cross current_catalog current_date current_role current_schema current_time
current_timestamp current_user default deferrable desc distinct do else end except false fetch for foreign freeze
from full grant group having ilike in initially inner intersect into is isnull join lateral leading left like limit
localtime localtimestamp natural not notnull null offset on only or order outer overlaps placing primary references
returning right select session_user similar some symmetric system_user table tablesample then to trailing true union
unique user using variadic verbose when where window with
"""
RESERVED_WORDS = frozenset(_RESERVED.split())
